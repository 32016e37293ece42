"""Accuracy on synthetic truth, against the best image-agnostic kernel (`kernels.yardstick`).

Photos blurred with DIV2KRK-style kernels and down-scaled x2. Beating the bicubic kernel proves
little (any fixed Gaussian of about the right width does it by 5 to 20 dB); an estimate is worth
having when it re-synthesises the LR better than the best single constant kernel for the whole
set, whose width is chosen with the truth. The per-image table is printed (run with -s).
"""
from __future__ import annotations

import numpy as np
import pytest

from realsr_fast.data.imresize import bicubic_kernel
from realsr_fast.kernel_estimation.estimate import estimate_kernels
from realsr_fast.kernel_estimation.estimators import KernelSettings
from realsr_fast.kernel_estimation.evaluation import yardstick
from realsr_fast.kernel_estimation.gaussians import isotropic_gaussian


def _rows(form: str, count: int, iterations: int = 3000, method: str = "kernelgan") -> list[yardstick.Row]:
    cases = yardstick.make_cases(count)
    settings = KernelSettings(method=method, iterations=iterations, form=form, device="cpu")
    estimates = estimate_kernels([c.lr for c in cases], [c.name for c in cases], settings)
    sigma = yardstick.best_constant_sigma(cases)
    rows = yardstick.score(cases, [e.kernel_x2 for e in estimates], sigma)
    print(f"\n{method}, {form} G\n" + yardstick.table(rows, sigma))
    return rows


def test_the_bar_rejects_every_image_agnostic_kernel_and_passes_the_truth():
    cases = yardstick.make_cases(4, side=256)
    sigma = yardstick.best_constant_sigma(cases)
    constants = [isotropic_gaussian(s) for s in (sigma, 1.0, 2.0)] + [bicubic_kernel(2, 17).double().numpy()]
    for kernel in constants:
        assert not yardstick.beats_constant(yardstick.score(cases, [kernel] * len(cases), sigma))
    truth_rows = yardstick.score(cases, [c.truth for c in cases], sigma)
    assert yardstick.beats_constant(truth_rows)
    assert all(r.error["truth"] < 1e-12 < r.error["constant"] for r in truth_rows)


def test_spectral_estimates_beat_the_best_constant_kernel():
    """The issue's goal on the benchmark set (8 photos): +1 dB over the best constant, a gain on 80 % of them."""
    rows = _rows("collapsed", 8, method="spectral")
    assert yardstick.beats_constant(rows)
    assert np.mean([r.error["estimate"] for r in rows]) < np.mean([r.error["constant"] for r in rows])


@pytest.mark.heavy  # several minutes: run with `python -m pytest -m heavy`
def test_official_estimates_beat_bicubic():
    """The official mode clears the old, weak bar; against the best constant it does not (see docs/kernel_prior.md)."""
    rows = _rows("collapsed", 2)
    gains = [r.psnr["estimate"] - r.psnr["bicubic"] for r in rows]
    assert np.mean(gains) > 1.0 and min(gains) > 0


@pytest.mark.heavy  # ~4 min alone
def test_literal_estimates_beat_bicubic():
    rows = _rows("literal", 1)
    assert rows[0].psnr["estimate"] > rows[0].psnr["bicubic"]
