"""Accuracy on synthetic truth: photos blurred with DIV2KRK-style kernels and down-scaled x2.

The estimated kernel must reproduce the LR clearly better than the bicubic assumption; the dB
gain per image is printed (run with -s) for the collapsed and the literal generator.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from realsr_fast.data.imresize import bicubic_kernel
from realsr_fast.kernelgan.estimate import estimate_kernels
from realsr_fast.kernelgan.synthetic import anisotropic_gaussian
from realsr_fast.ops import degrade

PHOTOS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea, "rocket": data.rocket}


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean()))


def _cases(count: int) -> list[tuple[str, torch.Tensor, np.ndarray, np.ndarray]]:
    """(name, HR (1, 3, H, W) float in [0, 1], true 11x11 kernel, LR uint8 (h, w, 3))."""
    rng = np.random.default_rng(2020)
    cases = []
    for name in list(PHOTOS)[:count]:
        hr = torch.from_numpy(PHOTOS[name]()[:384, :384].copy()).permute(2, 0, 1)[None].float() / 255
        truth = anisotropic_gaussian(rng)
        lr = degrade(hr, torch.from_numpy(truth).float(), 2, padding="symmetric", quantize=True)
        cases.append((name, hr, truth, (lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)))
    return cases


def _gains(form: str, count: int, iterations: int) -> list[float]:
    cases = _cases(count)
    estimates = estimate_kernels([c[3] for c in cases], [c[0] for c in cases], iterations=iterations, form=form)
    bicubic = bicubic_kernel(2, 17)
    gains = []
    for (name, hr, truth, lr_u8), estimate in zip(cases, estimates):
        lr = torch.from_numpy(lr_u8).permute(2, 0, 1)[None].float() / 255
        with_estimate = _psnr(degrade(hr, torch.from_numpy(estimate.kernel_x2).float(), 2), lr)
        with_bicubic = _psnr(degrade(hr, bicubic, 2), lr)
        gains.append(with_estimate - with_bicubic)
        print(f"{form} {name}: estimate {with_estimate:.2f} dB, bicubic {with_bicubic:.2f} dB, "
              f"gain {gains[-1]:+.2f} dB, flags {estimate.report['flags']}")
    return gains


@pytest.mark.slow
def test_collapsed_estimates_beat_bicubic_on_synthetic_truth():
    gains = _gains("collapsed", 2, 3000)
    assert np.mean(gains) > 1.0 and min(gains) > 0


@pytest.mark.heavy  # ~4 min alone: run with `python -m pytest -m heavy`
def test_literal_estimates_beat_bicubic_on_synthetic_truth():
    gains = _gains("literal", 1, 3000)
    assert min(gains) > 0
