"""The spectral estimator's error spread (`spectral.ERROR_LOG_SD`), measured on the development set only.

For every development photo (`bench_kernel_families.SETS`: `dev` and `dev2`) and its Gaussian-family
draw, clean x2 LR: the maximum-likelihood fit before shrinking (`spectral.fit_blur`) against the true
kernel's two widths (square roots of the eigenvalues of its second-moment matrix). Prints the standard
deviation of log(fitted / true width) over both widths of every case, and the shrink weight it gives
with the prior's spread (docs/evaluation.md, "What was chosen on the development set").

Run: python benchmarks/spectral_constants.py
"""
from __future__ import annotations

import numpy as np
import torch
from bench_kernel_families import make_cases

from realsr_fast.kernel_estimation import spectral
from realsr_fast.kernel_estimation.quality import kernel_report


def widths(kernel: np.ndarray) -> np.ndarray:
    """The kernel's two widths (px), major first, from its second moments (`quality.kernel_report`'s)."""
    report = kernel_report(kernel, (0.0, 0.0), True)
    return np.array([report["sigma_major_px"], report["sigma_minor_px"]])


def main() -> None:
    torch.set_num_threads(1)
    errors = []
    for split in ("dev", "dev2"):
        cases, inputs = make_cases(split, "gaussian", "clean", 384, 1)
        for case, item in zip(cases, inputs):
            grey = torch.from_numpy(np.mean(item.lr / 255.0, axis=-1))
            tile = spectral.TILE if min(grey.shape) >= 2 * spectral.TILE else spectral.SMALL_TILE
            fit = spectral.fit_blur(spectral.welch_periodograms(grey, tile).all)
            fitted = np.array([fit.sigma_major, fit.sigma_minor])
            errors.extend(np.log(fitted / widths(case.truth)))
            print(f"{case.name:24s} fitted {fitted.round(2)} true {widths(case.truth).round(2)}", flush=True)
    error_sd = float(np.std(errors))
    weight = error_sd**2 / (error_sd**2 + spectral.FAMILY_LOG_SD**2)
    print(f"ERROR_LOG_SD = {error_sd:.2f} over {len(errors)} widths; shrink weight {weight:.2f} "
          f"(prior spread {spectral.FAMILY_LOG_SD})")


if __name__ == "__main__":
    main()
