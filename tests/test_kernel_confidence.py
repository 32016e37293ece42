"""The yardstick's parts (isotropic Gaussians, the best-constant search) and the seed agreement of KernelGAN runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realsr_fast.kernel_estimation.confidence import IDENTICAL_DB, kernel_agreement_db
from realsr_fast.kernel_estimation.evaluation import yardstick
from realsr_fast.kernel_estimation.gaussians import isotropic_gaussian
from realsr_fast.ops import degrade


def _moments(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid = np.stack(np.meshgrid(np.arange(k.shape[0]), np.arange(k.shape[1]), indexing="ij"), -1).astype(float)
    centre = np.einsum("hw,hwi->i", k, grid) / k.sum()
    d = grid - centre
    return centre, np.einsum("hw,hwi,hwj->ij", k, d, d) / k.sum()


def test_isotropic_gaussian_has_the_asked_width_and_centre(rng):
    sigma = float(rng.uniform(0.8, 2.0))
    centre, covariance = _moments(isotropic_gaussian(sigma, 31))
    np.testing.assert_allclose(centre, 15.5)
    np.testing.assert_allclose(np.diag(covariance), sigma**2, rtol=1e-6)


def test_best_constant_finds_the_width_the_set_was_made_with(rng):
    """A set blurred with one isotropic kernel: the search must return that width."""
    sigma = float(rng.choice(yardstick.CONSTANT_SIGMAS[10:30]))
    truth = isotropic_gaussian(sigma, 11)
    cases = []
    for i in range(2):
        hr = torch.from_numpy(rng.random((1, 3, 48, 48))).float()
        hr = torch.nn.functional.avg_pool2d(hr, 3, 1, 1)  # some structure at several scales
        lr = degrade(hr, torch.from_numpy(truth).float(), 2, padding="symmetric", quantize=True)
        lr_u8 = (lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        cases.append(yardstick.Case(f"c{i}", hr, truth, lr_u8))
    assert yardstick.best_constant_sigma(cases) == pytest.approx(sigma)


def test_seed_agreement_falls_as_kernels_part(rng):
    image = rng.random((40, 40, 3))
    a = isotropic_gaussian(1.2)
    assert kernel_agreement_db(image, [a, a.copy()]) == IDENTICAL_DB
    near = kernel_agreement_db(image, [a, isotropic_gaussian(1.3)])
    far = kernel_agreement_db(image, [a, isotropic_gaussian(2.0)])
    worst = kernel_agreement_db(image, [a, isotropic_gaussian(1.3), isotropic_gaussian(2.0)])
    assert far < near < IDENTICAL_DB and worst == pytest.approx(far)


def test_kernels_command_with_two_seeds_reports_seed_agreement(tmp_path, rng):
    import json

    from PIL import Image

    from realsr_fast.cli import main

    src, out = tmp_path / "photos", tmp_path / "out"
    src.mkdir()
    Image.fromarray((rng.random((96, 100, 3)) * 255).astype(np.uint8)).save(src / "a.png")
    assert main(["kernels", str(src), "-o", str(out), "--kernel-iters", "3", "--seeds", "2", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())["a"]
    assert report["runs"] == 2
    assert report["seed_agreement_db"] > 0 and report["trusted"] == (report["seed_agreement_db"] >= 45.0)
    assert np.load(out / "a" / "a_kernel_x2.npy").shape == (17, 17)
