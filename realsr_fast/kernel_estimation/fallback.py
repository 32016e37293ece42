"""The kernels training uses: each photo's estimate, or a constant kernel where the estimate is not trusted.

A photo's estimate report records its trust, which its estimator reads back (`estimators.Trust`):
with `--seeds >= 2` whether KernelGAN's runs agreed (`confidence`), for a spectral estimate whether
the fits to two halves of the photo agreed, for the families whether the runner-up family agreed.
An untrusted estimate is a coin toss: training on it would teach the model a blur the camera may
not have. It is replaced by the fallback, the isotropic Gaussian of width :data:`FALLBACK_SIGMA`
(x2; at x4 its analytic x4 kernel, as for an estimate): the best constant kernel of the kernel
yardstick's benchmark set (`yardstick.best_constant_sigma`, docs/kernel_prior.md), which beat the
official KernelGAN's estimate on 7 of its 8 photos there.
With one run per photo trust is unknown: the estimate is used and the record says it was not checked.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realsr_fast.data.kernel_bank import find_kernel_files
from realsr_fast.data.kernel_files import load_kernel
from realsr_fast.io import atomic_write
from realsr_fast.kernel_estimation.estimators import estimator_of
from realsr_fast.kernel_estimation.gaussians import BEST_CONSTANT_SIGMA, isotropic_gaussian
from realsr_fast.kernel_estimation.postprocess import analytic_x4

FALLBACK_SIGMA = BEST_CONSTANT_SIGMA
"""Width (x2 pixels) of the fallback: the best constant on the yardstick's 8 photos (docs/kernel_prior.md)."""


@dataclass
class KernelChoice:
    """Which kernel training uses for one photo, and why."""

    photo: str
    used: str
    """"estimate" or "fallback"."""
    trust: str
    """"trusted", "untrusted" or "not checked"."""
    why: str
    agreement_db: float | None = None


def fallback_kernel(scale: int) -> np.ndarray:
    """The fallback kernel: `(17, 17)` at scale 2, `(33, 33)` at scale 4, float64, sum 1."""
    kernel = isotropic_gaussian(FALLBACK_SIGMA)
    return analytic_x4(kernel) if scale == 4 else kernel


def training_kernels(estimates: str | Path, out: str | Path, scale: int) -> list[KernelChoice]:
    """Write the kernel training uses for each x`scale` kernel of `estimates` into `out` (emptied first).

    `out` mirrors `estimates`' layout (`<photo>/<photo>_kernel_x<scale>.npy`, or flat); a photo's
    estimate report is `<photo>_report.json` beside its kernel (`realsr kernels`). Untrusted
    estimates become :func:`fallback_kernel`; estimates without a trust verdict are used as they are.

    Raises:
        RealSRError: `estimates` holds no x`scale` kernel, or one cannot be read.
    """
    estimates, out = Path(estimates), Path(out)
    files = find_kernel_files(estimates, scale)
    shutil.rmtree(out, ignore_errors=True)
    choices = []
    for path in files:
        photo = path.stem.rsplit("_kernel_x", 1)[0]
        choice = _choose(photo, path.parent / f"{photo}_report.json")
        kernel = fallback_kernel(scale) if choice.used == "fallback" else load_kernel(path)
        target = out / path.relative_to(estimates).with_suffix(".npy")
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target) as file:
            np.save(file, kernel)
        choices.append(choice)
    return choices


def _choose(photo: str, report_path: Path) -> KernelChoice:
    if not report_path.is_file():
        return KernelChoice(photo, "estimate", "not checked", "no estimate report beside the kernel")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    estimator = estimator_of(report)
    trust = estimator.trust_of(report) if estimator is not None else None
    if trust is None:
        why = estimator.unchecked if estimator is not None else f"no trust verdict from {report['method']!r}"
        return KernelChoice(photo, "estimate", "not checked", why)
    if trust.trusted:
        return KernelChoice(photo, "estimate", "trusted", trust.reason, trust.agreement_db)
    return KernelChoice(photo, "fallback", "untrusted", f"{trust.reason}; the isotropic Gaussian (sigma {FALLBACK_SIGMA} px "
                        "at x2) is used instead", trust.agreement_db)
