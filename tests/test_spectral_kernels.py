"""The spectral blur estimator (`kernelgan.spectral`) against fields whose blur is known exactly.

The reference is written here from the model's definition, with numpy only: a Gaussian random
field with a power law spectrum, blurred by multiplying its Fourier transform with a Gaussian's
exp(-2 pi^2 f'Sf), kept at every 2nd pixel, 8-bit. On such a field the model holds, so the fit must
find the blur; fresh random widths, angles and slopes every run.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from realsr_fast.cli import main
from realsr_fast.errors import RealSRError
from realsr_fast.kernel_estimation import spectral
from realsr_fast.kernel_estimation.estimate import estimate_kernel_folder, estimate_kernels
from realsr_fast.kernel_estimation.estimators import KernelSettings
from realsr_fast.kernel_estimation.fallback import training_kernels
from realsr_fast.kernel_estimation.gaussians import TYPICAL_SIGMA, covariance, gaussian_kernel
from realsr_fast.kernel_estimation.spectral import (
    MAX_SIGMA,
    MIN_SIGMA,
    BlurFit,
    estimate_blur,
    fit_blur,
    shrunk,
    tile_periodograms,
    welch_periodograms,
)


def power_law_lr(rng: np.random.Generator, cov: np.ndarray, slope: float, side: int = 512,
                 noise: float = 0.0) -> np.ndarray:
    """`(side/2, side/2)` uint8 LR of a random field with spectrum |f|^-slope blurred by Gaussian `cov` (HR px^2),
    plus white Gaussian noise of standard deviation `noise` grey levels."""
    f = np.fft.fftfreq(side)
    fr, fc = np.meshgrid(f, f, indexing="ij")
    radius2 = fr**2 + fc**2
    radius2[0, 0] = np.inf
    amplitude = radius2 ** (-slope / 4)  # power |f|^-slope
    transfer = np.exp(-2 * np.pi**2 * (cov[0, 0] * fr**2 + 2 * cov[0, 1] * fr * fc + cov[1, 1] * fc**2))
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((side, side))) * amplitude * transfer).real
    lr = field[::2, ::2]
    lr = 0.5 + 0.08 * (lr - lr.mean()) / lr.std() + rng.normal(0, noise / 255, lr.shape)
    return np.clip(np.round(lr * 255), 0, 255).astype(np.uint8)


def mean_periodogram(lr: np.ndarray, tile: int = 64):
    import torch

    return tile_periodograms(torch.from_numpy(lr.astype(np.float64) / 255), tile).mean(dim=(0, 1))


@pytest.mark.parametrize("noise, tolerance", [(0.0, 0.08), (0.0, 0.08), (2.0, 0.15)])
def test_fit_finds_the_blur_of_a_power_law_field(noise, tolerance, rng):
    """White noise is part of the model: with it (2 grey levels) the widths are still found, less closely
    (12 seeds: worst 12 %; before the fit took the spectrum first, 3 of them collapsed to widths near 0)."""
    major, minor = sorted(rng.uniform(0.9, 2.2, 2), reverse=True)
    angle, slope = rng.uniform(0, np.pi), rng.uniform(2.0, 3.0)
    fit = fit_blur(mean_periodogram(power_law_lr(rng, covariance(major, minor, angle), slope, noise=noise)))
    assert fit.sigma_major == pytest.approx(major, rel=tolerance)
    assert fit.sigma_minor == pytest.approx(minor, rel=tolerance)
    assert fit.slope == pytest.approx(slope, abs=0.4)
    if major > 1.3 * minor:  # the angle is defined
        turn = abs(fit.angle - angle) % np.pi
        assert min(turn, np.pi - turn) < np.radians(8), (fit, major, minor, angle)


def test_gaussian_kernel_has_the_asked_covariance(rng):
    cov = covariance(*sorted(rng.uniform(0.8, 2.0, 2), reverse=True), rng.uniform(0, np.pi))
    kernel = gaussian_kernel(cov, 31)
    offsets = np.arange(31) - 15.5  # x2 centre of an odd kernel
    d = np.stack(np.meshgrid(offsets, offsets, indexing="ij"), axis=-1)
    assert np.abs(np.einsum("hw,hwi->i", kernel, d)).max() < 1e-9
    assert np.abs(np.einsum("hw,hwi,hwj->ij", kernel, d, d) - cov).max() < 1e-3  # sampling: ~1e-4 at 0.8 px


def test_shrunk_moves_each_width_towards_the_typical_one_in_log_space():
    fit = BlurFit(3.0, 1.0, 0.4, 2.5)
    moved = shrunk(fit, weight=0.25, typical=2.0)
    assert moved.sigma_major == pytest.approx(3.0**0.75 * 2.0**0.25) and moved.sigma_minor == pytest.approx(2.0**0.25)
    assert (moved.angle, moved.slope) == (0.4, 2.5)
    assert shrunk(fit, weight=0.0) == fit
    assert shrunk(BlurFit(TYPICAL_SIGMA, TYPICAL_SIGMA, 0, 2), 0.5).sigma_major == pytest.approx(
        TYPICAL_SIGMA)
    extreme = shrunk(BlurFit(50.0, 0.01, 0, 2), weight=0.0)
    assert (extreme.sigma_major, extreme.sigma_minor) == (MAX_SIGMA, MIN_SIGMA)


def test_estimate_reports_a_centred_kernel_and_half_agreement(rng):
    lr = power_law_lr(rng, covariance(1.6, 1.1, 0.7), 2.5, side=384)
    estimate = estimate_blur(np.repeat(lr[..., None], 3, axis=2) / 255.0)
    assert estimate.kernel.shape == (17, 17) and abs(estimate.kernel.sum() - 1) < 1e-12
    assert estimate.half_agreement_db > 45  # the model holds on both halves
    flat = np.full((100, 100, 3), 0.5)
    with pytest.raises(RealSRError, match="flat"):
        estimate_blur(flat)
    with pytest.raises(RealSRError, match="at least 64x64"):
        estimate_blur(np.zeros((40, 200, 3)))


def test_spectral_method_refuses_kernelgan_options():
    image = np.zeros((96, 96, 3), np.uint8)
    with pytest.raises(RealSRError, match="--seeds belongs to KernelGAN"):
        estimate_kernels([image], ["a"], KernelSettings(runs=2, method="spectral"))
    with pytest.raises(RealSRError, match="--method must be one of"):
        estimate_kernels([image], ["a"], KernelSettings(method="guess"))


def test_kernels_cli_spectral_writes_every_photo_and_reports_the_flat_one(tmp_path, capsys, rng):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(2):
        lr = power_law_lr(rng, covariance(1.8, 1.2, rng.uniform(0, np.pi)), 2.5, side=256)
        Image.fromarray(lr).save(photos / f"photo{index}.png")
    Image.fromarray(np.full((90, 90, 3), 77, np.uint8)).save(photos / "flat.png")
    out = tmp_path / "kernels"
    assert main(["kernels", str(photos), "-o", str(out), "--method", "spectral", "--scale", "4", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "2 images estimated" in err and "1 failed" in err and "flat.png: the image has no detail" in err
    assert "Traceback" not in err
    for photo in ("photo0", "photo1"):
        report = json.loads((out / photo / f"{photo}_report.json").read_text())
        assert report["method"] == "spectral" and report["trusted"] == (report["half_agreement_db"] >= 45)
        assert np.load(out / photo / f"{photo}_kernel_x4.npy").shape == (33, 33)
    choices = training_kernels(out, tmp_path / "used", 4)
    assert [c.trust for c in choices] == ["trusted", "trusted"]
    assert all("spectral fits to its two halves agree" in c.why for c in choices)
    assert main(["kernels", str(photos), "-o", str(out), "--method", "spectral", "--seeds", "2"]) != 0
    assert "--seeds belongs to KernelGAN" in capsys.readouterr().err


def test_untrusted_spectral_estimate_falls_back(tmp_path):
    folder = tmp_path / "estimates" / "photo"
    folder.mkdir(parents=True)
    np.save(folder / "photo_kernel_x4.npy", np.full((33, 33), 1 / 33**2))
    (folder / "photo_report.json").write_text(json.dumps({"method": "spectral", "half_agreement_db": 40.0,
                                                          "trusted": False}))
    (choice,) = training_kernels(tmp_path / "estimates", tmp_path / "used", 4)
    assert (choice.used, choice.trust, choice.agreement_db) == ("fallback", "untrusted", 40.0)
    assert "two halves disagree: 40.0 dB < 45 dB" in choice.why


def test_folder_estimate_needs_one_run_with_the_spectral_method(tmp_path):
    with pytest.raises(RealSRError, match="--seeds belongs to KernelGAN"):
        estimate_kernel_folder(tmp_path, tmp_path / "out", KernelSettings(runs=3, method="spectral"))


def reference_welch(grey: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the spec, numpy only: every half-overlapping tile (step tile/2), less its mean, times the
    symmetric 2-D Hann window, |FFT|^2 / sum(window^2); the mean over all tiles, and over each half (a
    checkerboard of 2x2 tile blocks: tile row r, column c in the first half when r // 2 + c // 2 is even)."""
    window = np.outer(np.hanning(tile), np.hanning(tile))
    step = tile // 2
    sums, counts = np.zeros((2, tile, tile)), [0, 0]
    for r in range((grey.shape[0] - tile) // step + 1):
        for c in range((grey.shape[1] - tile) // step + 1):
            patch = grey[r * step:r * step + tile, c * step:c * step + tile]
            half = (r // 2 + c // 2) % 2
            sums[half] += np.abs(np.fft.fft2((patch - patch.mean()) * window)) ** 2 / (window**2).sum()
            counts[half] += 1
    return sums.sum(0) / sum(counts), sums[0] / counts[0], sums[1] / counts[1]


@pytest.mark.parametrize("chunk", [1, 3, 7, None])
def test_welch_periodograms_in_chunks_equal_the_means_over_all_tiles(rng, chunk):
    """Summed a chunk at a time (ragged last chunks included), the means are those of every tile held at
    once (the former implementation) and of the numpy reference, to float64 rounding."""
    grey = power_law_lr(rng, covariance(1.5, 1.1, 0.4), 2.4, side=int(rng.integers(360, 420))) / 255.0
    grey = grey[:, : grey.shape[1] - int(rng.integers(0, 20))]  # not square, not a multiple of the step
    got = welch_periodograms(torch.from_numpy(grey), 64, chunk)
    all_tiles = tile_periodograms(torch.from_numpy(grey), 64)
    rows, cols = np.meshgrid(np.arange(all_tiles.shape[0]), np.arange(all_tiles.shape[1]), indexing="ij")
    first = torch.from_numpy((rows // 2 + cols // 2) % 2 == 0)
    former = [all_tiles.mean(dim=(0, 1)), all_tiles[first].mean(0), all_tiles[~first].mean(0)]
    reference = reference_welch(grey, 64)
    for mean, was, want in zip([got.all, *got.halves], former, reference):
        np.testing.assert_allclose(mean.numpy(), want, rtol=1e-12, atol=0)
        np.testing.assert_allclose(mean.numpy(), was.numpy(), rtol=1e-12, atol=0)


def test_estimate_fits_the_whole_photo_then_each_half(rng, monkeypatch):
    """estimate_blur hands fit_blur the Welch mean of every tile, then each half's from the first fit."""
    lr = power_law_lr(rng, covariance(1.4, 1.0, 0.2), 2.5, side=448)
    image = np.repeat(lr[..., None], 3, axis=2) / 255.0
    fitted = []

    def fake_fit(periodogram, starts=spectral.STARTS):
        fitted.append((periodogram.numpy().copy(), starts))
        return BlurFit(1.5 - 0.1 * len(fitted), 1.0, 0.3, 2.2)

    monkeypatch.setattr(spectral, "fit_blur", fake_fit)
    monkeypatch.setattr(spectral, "CHUNK_TILES", 5)
    estimate = estimate_blur(image)
    reference = reference_welch(lr / 255.0, 64)
    assert len(fitted) == 3 and fitted[0][1] == spectral.STARTS
    assert fitted[1][1] == fitted[2][1] == [(1.4, 1.0, 0.3)]  # the halves start from the whole photo's fit
    for (periodogram, _), want in zip(fitted, reference):
        np.testing.assert_allclose(periodogram, want, rtol=1e-12, atol=0)
    assert estimate.fit == BlurFit(1.4, 1.0, 0.3, 2.2) and estimate.used == shrunk(estimate.fit)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor storage any torch op allocates inside the block (views not counted)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_leaves(out):
            if isinstance(value, torch.Tensor) and not value._is_view():
                self.largest = max(self.largest, value.untyped_storage().nbytes())
        return out


def test_estimate_memory_does_not_grow_with_the_number_of_tiles(rng, monkeypatch):
    """On a large photo the Welch averages and the fits make no torch tensor bigger than twice the grey
    image (the fits are stubbed here for time; they work on one `(64, 64)` mean): the tiles' periodograms
    (nearly 4 tiles per pixel: nearly 4x the grey image in float64, 8x as complex128) are never all held at once,
    only a chunk of CHUNK_TILES (its complex transforms: 16 MiB for 64 px tiles)."""
    side = 1536
    image = rng.random((side, side, 3))
    grey_bytes = side * side * 8
    assert spectral.CHUNK_TILES * spectral.TILE**2 * 16 <= 2 * grey_bytes  # the bound holds for the chunks
    monkeypatch.setattr(spectral, "fit_blur", lambda periodogram, starts=spectral.STARTS: BlurFit(1.3, 1.1, 0.5, 2.0))
    # the halves' re-synthesis check works on the whole colour image once per kernel: not this test's subject
    monkeypatch.setattr(spectral, "kernel_agreement_db", lambda image, kernels: 50.0)
    with LargestTensor() as spy:
        estimate_blur(image)
    tiles = ((side - 64) // 32 + 1) ** 2
    assert tiles * 64 * 64 * 8 > 3.5 * grey_bytes  # what holding every tile's float64 periodogram takes
    assert 0 < spy.largest <= 2 * grey_bytes, (spy.largest, grey_bytes)
