"""Per-image confidence from agreement between estimates, measured where it matters: in re-synthesis dB.

Two runs (seeds) of KernelGAN on one photo, or the spectral fits to two halves of it, give two
kernels. Blurring and down-scaling the photo itself with each and comparing the results (PSNR) says
how much the choice between them would change training data made with them: high dB means the
estimates agree where it counts, low dB means the estimate is a coin toss and an image-agnostic
kernel is the safer choice. Unlike an L1 distance between kernels it weighs a difference by what it
does to this photo's content.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

from realsr_fast.kernel_estimation.estimators import Trust
from realsr_fast.ops import degrade

IDENTICAL_DB = 100.0
"""Reported for kernels whose re-syntheses are equal (kept finite for JSON reports)."""
TRUSTED_DB = 45.0
"""Agreement (dB) from which an estimate is trusted, chosen on the yardstick's 8 images with 2 seeds;
what the estimates below it lost is in docs/kernel_prior.md, "Confidence"."""


def kernel_agreement_db(image: np.ndarray, kernels: list[np.ndarray]) -> float:
    """Lowest pairwise PSNR (dB) between the x2 re-syntheses of `image` by each kernel.

    Args:
        image: `(H, W, 3)` float in [0, 1] (e.g. `crops.prepare_image` output).
        kernels: two or more x2 kernels of one size, e.g. `(17, 17)`.

    Returns:
        The worst pair's PSNR in dB, at most `IDENTICAL_DB`.
    """
    if len(kernels) < 2:
        raise ValueError("seed agreement needs at least two kernels")
    hr = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None]
    weights = torch.from_numpy(np.stack(kernels)).float()
    made = degrade(hr.expand(len(kernels), -1, -1, -1), weights, 2, padding="symmetric")
    worst = IDENTICAL_DB
    for a, b in itertools.combinations(range(len(kernels)), 2):
        mse = float((made[a] - made[b]).square().mean())
        worst = min(worst, 10 * np.log10(1 / mse) if mse > 0 else IDENTICAL_DB)
    return float(worst)


def agreement_trust(agreement_db: float, threshold_db: float, trusted: bool, compared: str) -> Trust:
    """The trust of an estimate whose `compared` estimates ("its 2 runs") agree to `agreement_db`."""
    verdict = f"agree: {agreement_db:.1f} dB >= " if trusted else f"disagree: {agreement_db:.1f} dB < "
    return Trust(agreement_db, threshold_db, bool(trusted), f"{compared} {verdict}{threshold_db:g} dB")
