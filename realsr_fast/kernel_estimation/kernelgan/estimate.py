"""The `kernelgan` estimator (`estimators.ESTIMATORS`): every photo and run trained together, the
most consistent run kept, the runs' agreement as trust."""
from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np

from realsr_fast.device import resolve_device
from realsr_fast.kernel_estimation.confidence import TRUSTED_DB, agreement_trust, kernel_agreement_db
from realsr_fast.kernel_estimation.estimators import KernelEstimate, KernelSettings, Trust
from realsr_fast.kernel_estimation.kernelgan.training import train_kernelgan
from realsr_fast.kernel_estimation.postprocess import post_process
from realsr_fast.kernel_estimation.quality import kernel_report, most_consistent


def image_seed(seed: int, name: str, run: int = 0) -> int:
    """The seed of one image's run: fixed by (seed, name, run), whatever batch or order it is in."""
    return zlib.crc32(f"{seed}/{run}/{name}".encode()) & 0x7FFFFFFF


def estimate(images: Sequence[np.ndarray], names: Sequence[str], settings: KernelSettings,
             jpeg_tables: Sequence[np.ndarray | None], on_progress: Callable[[int], None] | None) -> list[KernelEstimate]:
    """KernelGAN on `images` (`crops.prepare_image` outputs), `settings.runs` runs each, in one batched training.

    With `runs >= 2` the report has `seed_agreement_db` (worst pairwise PSNR between the runs'
    re-syntheses of the image) and `trusted` (agreement >= `TRUSTED_DB`); see `confidence`.
    """
    runs = settings.runs
    seeds = [image_seed(settings.seed, name, run) for name in names for run in range(runs)]
    result = train_kernelgan([im for im in images for _ in range(runs)], seeds, settings.iterations, settings.form,
                             resolve_device(settings.device), on_progress, bicubic_weight=settings.bicubic_weight)
    estimates = []
    for index, image in enumerate(images):
        picks = range(index * runs, (index + 1) * runs)
        processed = [post_process(result.kernels[i].numpy()) for i in picks]
        best, spread = most_consistent([p.kernel for p in processed])
        chosen = processed[best]
        report = kernel_report(chosen.kernel, chosen.shift, result.constrained[picks[best]], settings.scale)
        report.update(runs=runs, run_spread_l1=spread, cut_mass=chosen.cut_mass, iterations=settings.iterations,
                      prior="none", bicubic_weight=settings.bicubic_weight)
        trust = None
        if runs > 1:
            agreement = kernel_agreement_db(image, [p.kernel for p in processed])
            trust = agreement_trust(agreement, TRUSTED_DB, agreement >= TRUSTED_DB, f"its {runs} runs")
            report.update(seed_agreement_db=trust.agreement_db, trusted=trust.trusted)
        estimates.append(KernelEstimate.at_scale(chosen.kernel, settings.scale, trust, report))
    return estimates


def trust_of(report: dict) -> Trust | None:
    """The runs' agreement a KernelGAN report records; None for one run (not checked)."""
    if report.get("runs", 1) < 2:
        return None
    return agreement_trust(float(report["seed_agreement_db"]), TRUSTED_DB, report["trusted"], f"its {report['runs']} runs")
