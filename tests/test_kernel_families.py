"""The family estimator (`kernelgan.families`) against fields whose blur is known exactly, and the bar.

Reference written here with numpy only: a Gaussian random field with a power-law spectrum, blurred in
the Fourier domain by the exact transfer of a disk (2 J1(x)/x, scipy's J1) or a segment (sinc), kept
at every 2nd pixel, 8-bit; fresh radii, lengths, angles and slopes every run.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import j1

from realsr_fast.errors import RealSRError
from realsr_fast.kernel_estimation import families
from realsr_fast.kernel_estimation.estimate import estimate_kernels
from realsr_fast.kernel_estimation.estimators import KernelSettings
from realsr_fast.kernel_estimation.evaluation import yardstick
from realsr_fast.kernel_estimation.families import estimate_families
from realsr_fast.kernel_estimation.family_kernels import jinc, render_kernel


def field_lr(rng: np.random.Generator, transfer, slope: float, side: int = 512) -> np.ndarray:
    """`(side/2, side/2, 3)` uint8 LR of a power-law field blurred by `transfer(fr, fc)` (HR cycles/px)."""
    f = np.fft.fftfreq(side)
    fr, fc = np.meshgrid(f, f, indexing="ij")
    radius2 = fr**2 + fc**2
    radius2[0, 0] = np.inf
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((side, side))) * radius2 ** (-slope / 4)
                         * transfer(fr, fc)).real[::2, ::2]
    grey = np.clip(np.round((0.5 + 0.08 * (field - field.mean()) / field.std()) * 255), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def disk_transfer(radius: float):
    def transfer(fr, fc):
        x = 2 * np.pi * radius * np.sqrt(fr**2 + fc**2)
        x[x == 0] = 1e-12
        return 2 * j1(x) / x * np.sinc(fr) * np.sinc(fc)
    return transfer


def motion_transfer(length: float, angle: float):
    return lambda fr, fc: np.sinc(length * (np.cos(angle) * fr + np.sin(angle) * fc)) * np.sinc(fr) * np.sinc(fc)


def test_jinc_and_its_gradient_match_scipy(rng):
    x = torch.from_numpy(rng.uniform(0.01, 20, 50)).requires_grad_(True)
    value = jinc(x)
    value.sum().backward()
    reference = 2 * j1(x.detach().numpy()) / x.detach().numpy()
    # torch.special.bessel_j1 is a rational approximation: its jinc is within 1.9e-7 of scipy's on a
    # 200 001-point grid over (0.01, 20), so 1e-10 failed on some draws.
    assert np.allclose(value.detach().numpy(), reference, rtol=0, atol=5e-7)
    step = 1e-6
    numeric = (2 * j1(x.detach().numpy() + step) / (x.detach().numpy() + step) - reference) / step
    assert np.allclose(x.grad.numpy(), numeric, atol=1e-4)


@pytest.mark.parametrize("family", ["disk", "motion"])
def test_the_family_and_its_size_are_found_on_a_power_law_field(family, rng):
    slope = rng.uniform(2.0, 2.8)
    if family == "disk":
        size = rng.uniform(1.2, 3.0)
        lr = field_lr(rng, disk_transfer(size), slope)
    else:
        size, angle = rng.uniform(2.5, 6.0), rng.uniform(0, np.pi)
        lr = field_lr(rng, motion_transfer(size, angle), slope)
    found = estimate_families(lr / 255.0)
    assert found.chosen.family == family, found.fits
    assert found.chosen.size == pytest.approx(size, rel=0.12)
    if family == "motion":
        turn = abs(found.chosen.params[1] - angle) % np.pi
        assert min(turn, np.pi - turn) < np.radians(8)


def test_a_well_determined_anisotropic_gaussian_keeps_its_anisotropy():
    """The spectral estimator's shrink pulled an exact 2.0/1.0 px fit towards isotropy; here only the size
    moves, by the posterior weight, and the axis ratio stays."""
    fit = families.FamilyFit("gaussian", (2.0, 1.0, 0.4), 2.0, 0.0, 0.0, 0.01, 0.0, 0.0)
    kept = families.shrink(fit)
    assert kept.params[0] / kept.params[1] == pytest.approx(2.0)
    assert kept.size == pytest.approx(fit.size, rel=0.01)
    vague = families.shrink(families.FamilyFit("gaussian", (2.0, 1.0, 0.4), 2.0, 0.0, 0.0, 10.0, 0.0, 0.0))
    assert vague.size == pytest.approx(families.TYPICAL_SIZE["gaussian"], rel=0.02)


@pytest.mark.parametrize("family, params", [("disk", (2.2, 0.0)), ("motion", (4.0, 1.0, 0.0)),
                                            ("gaussian", (1.8, 1.1, 0.3))])
def test_rendered_kernels_are_centred_as_kernelgans_and_sum_to_one(family, params):
    kernel = render_kernel(family, params)
    offsets = np.arange(kernel.shape[0])
    assert kernel.sum() == pytest.approx(1.0)
    assert (kernel * offsets[:, None]).sum() == pytest.approx(8.5, abs=0.05)
    assert (kernel * offsets[None]).sum() == pytest.approx(8.5, abs=0.05)


def test_jpeg_mask_leaves_out_the_frequencies_quantisation_removes():
    table = np.full((8, 8), 1.0)
    table[4:, :] = 1000.0  # rows of DCT frequency 4..7 (LR 0.25..0.5 cycles/px) quantised away
    mask = families.frequency_mask(64, table)
    u = np.abs(np.fft.fftfreq(64))
    assert not mask.numpy()[u >= 0.25 + 1 / 32].any()
    kept = (u > 0.05) & (u < 0.2) & (u != 0.125)  # 1/8 cycle per px: the 8-px block grid's line, left out
    assert mask.numpy()[kept][:, kept].all()
    assert not mask.numpy()[u == 0.125].any() and not mask.numpy()[:, u == 0.125].any()
    assert families.frequency_mask(64).numpy()[u == 0.125][:, kept].all()  # not without JPEG


def test_flat_and_tiny_images_are_refused():
    with pytest.raises(RealSRError):
        estimate_families(np.full((100, 100, 3), 0.5))
    with pytest.raises(RealSRError):
        estimate_families(np.random.default_rng(0).random((40, 40, 3)))


def test_estimate_kernels_reports_the_family(rng):
    lr = field_lr(rng, disk_transfer(2.0), 2.4, side=256)
    (estimate,) = estimate_kernels([lr], ["field"], KernelSettings(scale=4, method="families"))
    assert estimate.report["method"] == "families" and estimate.report["family"] in families.FAMILIES
    assert estimate.kernel_x2.shape == (17, 17) and estimate.kernel_x4.shape[0] > 17
    with pytest.raises(RealSRError):
        estimate_kernels([lr], ["field"], KernelSettings(runs=2, method="families"))


@pytest.mark.heavy  # minutes on a shared 2-core CPU
@pytest.mark.xfail(strict=True, reason="the issue's goal, not yet met (figures in docs/evaluation.md)")
def test_the_bar_on_two_development_photos():
    """The issue's bar on two photos of the development set per family (clean x2; the locked benchmark is
    benchmarks/bench_kernel_families.py): the estimate over 1 dB above the best constant kernel on average."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_kernel_families as bench

    for family in families.FAMILIES:
        cases, inputs = bench.make_cases("dev2", family, "clean", 256, 1, ("camera", "grace_hopper"))
        kernels = [estimate_families(i.lr / 255.0, i.jpeg_table).kernel for i in inputs]
        rows = yardstick.score(cases, kernels, yardstick.best_constant_sigma(cases))
        gains = [r.psnr["estimate"] - r.psnr["constant"] for r in rows]
        assert math.fsum(gains) / len(gains) > 1.0, (family, gains)


def test_an_untrusted_families_estimate_falls_back_to_the_constant_kernel(tmp_path):
    import json

    from realsr_fast.kernel_estimation.fallback import _choose

    for trusted, kind in ((True, "estimate"), (False, "fallback")):
        report = tmp_path / f"{trusted}.json"
        unnatural = [] if trusted else ["orientation 1.90 > 1.2"]
        report.write_text(json.dumps({"method": "families", "trusted": trusted, "unnatural": unnatural,
                                      "family_agreement_db": 41.0}))
        choice = _choose("photo", report)
        assert choice.used == kind
        assert ("runner-up blur family 41.0 dB" if trusted else "orientation 1.90") in choice.why
        # A report of an earlier version (no natural-photo checks recorded) keeps its verdict.
        report.write_text(json.dumps({"method": "families", "trusted": trusted, "misfit": 0.3, "family_agreement_db": 41.0}))
        assert _choose("photo", report).used == kind


def test_a_blurred_power_law_field_passes_the_natural_photo_checks(rng):
    """The model's own kind of image: slope in range, no orientation, and no residual beyond the Welch
    average's chance spread, at a small and a large size (the chance part shrinks with the tile count)."""
    for side in (192, 768):
        lr = field_lr(rng, disk_transfer(rng.uniform(1.2, 2.5)), rng.uniform(2.0, 2.8), side=side)
        found = estimate_families(lr / 255.0)
        assert found.chosen.unnatural() == [], (side, found.chosen)
        assert found.chosen.residual_spread < 0.5 * families.MAX_RESIDUAL_SPREAD
        assert found.trust.trusted or found.trust.agreement_db < families.MIN_FAMILY_AGREEMENT_DB


def _stripes(rng: np.random.Generator, side: int = 384) -> np.ndarray:
    """Text-like lines: dark bars of random thickness along one random direction on a bright page."""
    angle = rng.uniform(0, np.pi)
    r, c = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    along = r * np.cos(angle) + c * np.sin(angle)
    period = rng.uniform(9, 14)
    page = np.where((along % period) < rng.uniform(2, 4), 40.0, 220.0)
    return page + rng.normal(0, 2, page.shape)


def _bricks(rng: np.random.Generator, side: int = 384) -> np.ndarray:
    """A periodic wall: bricks of a random size with mortar lines, each course shifted by half a brick."""
    height, width = rng.integers(10, 16), rng.integers(22, 34)
    r, c = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    course = r // height
    shifted = c + (course % 2) * (width // 2)
    mortar = (r % height < 2) | (shifted % width < 2)
    return np.where(mortar, 200.0, 110.0) + rng.normal(0, 3, mortar.shape)


@pytest.mark.parametrize("content", [_stripes, _bricks])
def test_documents_and_periodic_walls_are_not_trusted(content, rng):
    """Blurred, x2-sampled text lines and brick walls: the estimate must be flagged, for the check that names why."""
    hr = torch.from_numpy(np.clip(content(rng), 0, 255) / 255).float()[None, None].expand(1, 3, -1, -1)
    kernel = torch.from_numpy(render_kernel("gaussian", (rng.uniform(1.0, 2.0), rng.uniform(0.8, 1.0), 0.0))).float()
    from realsr_fast.ops import degrade

    lr = degrade(hr, kernel, 2, padding="symmetric", quantize=True)[0].permute(1, 2, 0).double().numpy()
    found = estimate_families(lr)
    assert not found.trust.trusted and found.chosen.unnatural(), found.chosen
