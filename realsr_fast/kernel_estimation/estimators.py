"""The kernel estimators, in one table: `ESTIMATORS[name]` is what `--method NAME` runs.

Light (no torch, no numpy at import): the command line reads the names and their help from here.
Each entry names the module that implements it, which has two functions:

    estimate(images, names, settings, jpeg_tables, on_progress) -> list[KernelEstimate]
        `images`: `crops.prepare_image` outputs; `jpeg_tables`: each photo's `(8, 8)` luminance
        quantisation table when it was a JPEG, else None; `on_progress(n)` after each step (an
        iteration when `batched`, else a photo);
    trust_of(report) -> Trust | None
        the trust an estimate of it recorded in its report (`<photo>_report.json`), None when unchecked.

Adding an estimator: its module with those two functions, and its entry in `ESTIMATORS` below.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Sequence

from realsr_fast.errors import RealSRError
from realsr_fast.kernel_estimation import ITERATIONS
from realsr_fast.kernel_estimation.kernelgan import LAMBDA_BICUBIC_START

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Trust:
    """Whether an estimate is trusted: two estimates of one photo compared where it matters, in
    re-synthesis dB (`confidence.kernel_agreement_db`), against the estimator's threshold."""

    agreement_db: float
    threshold_db: float
    trusted: bool
    reason: str
    """The verdict in words: the agreement against the threshold, both in dB."""


@dataclass(frozen=True)
class KernelEstimate:
    """One photo's estimated kernels, their trust and their report."""

    kernel_x2: np.ndarray
    """`(17, 17)` float64."""
    kernel_x4: np.ndarray | None
    """`(33, 33)` float64 at scale 4 (the analytic x4 of `kernel_x2`), else None."""
    trust: Trust | None
    """None: not checked (e.g. one KernelGAN run)."""
    report: dict
    """What `<photo>_report.json` records: `quality.kernel_report` and the estimator's details."""

    @classmethod
    def at_scale(cls, kernel_x2: np.ndarray, scale: int, trust: Trust | None, report: dict) -> KernelEstimate:
        """The estimate of `kernel_x2`, with its analytic x4 kernel at scale 4."""
        from realsr_fast.kernel_estimation.postprocess import analytic_x4

        return cls(kernel_x2, analytic_x4(kernel_x2) if scale == 4 else None, trust, report)


@dataclass(frozen=True)
class KernelSettings:
    """How kernels are estimated (`realsr kernels`' options); invalid values raise RealSRError."""

    method: str = "kernelgan"
    """A name of `ESTIMATORS`."""
    scale: int = 2
    """2, or 4 for the analytic x4 kernel as well."""
    iterations: int = ITERATIONS
    """KernelGAN iterations (official 3000); batched estimators only."""
    seed: int = 0
    """Base seed: with each photo's name it fixes the photo's random choices."""
    runs: int = 1
    """Estimates per photo (batched estimators only): the most consistent one (medoid) is kept and,
    from 2 on, their agreement is the estimate's trust."""
    batch: int = 16
    """Photos estimated together by a batched estimator."""
    form: str = "collapsed"
    """KernelGAN's generator form: "collapsed" (fast) or "literal" (the official deep convolutions)."""
    device: str = "auto"
    """auto, cpu or cuda (or a torch device string)."""
    bicubic_weight: float = LAMBDA_BICUBIC_START
    """KernelGAN's starting weight of the bicubic loss (`kernelgan.LAMBDA_BICUBIC_START`)."""

    def __post_init__(self) -> None:
        if self.scale not in (2, 4):
            raise RealSRError(f"kernels are estimated at x2 (and x4 from them): --scale must be 2 or 4, not {self.scale}")
        if self.batch < 1:
            raise RealSRError(f"--batch must be at least 1, got {self.batch}")
        if self.iterations < 1:
            raise RealSRError(f"--kernel-iters must be at least 1, got {self.iterations}")
        if self.runs < 1:
            raise RealSRError(f"--seeds must be at least 1, got {self.runs}")
        if self.method not in ESTIMATORS:
            raise RealSRError(f"--method must be one of {', '.join(ESTIMATORS)}, not {self.method!r}")
        if not self.estimator.batched and self.runs != 1:
            raise RealSRError(f"--seeds belongs to KernelGAN; --method {self.method} is deterministic and "
                              "checks itself (the trust in its report: trusted and why)")

    @property
    def estimator(self) -> Estimator:
        return ESTIMATORS[self.method]


@dataclass(frozen=True)
class Estimator:
    """One entry of `ESTIMATORS`."""

    name: str
    summary: str
    """What it does, for `--method`'s help."""
    module: str
    """The module implementing it (`estimate` and `trust_of`, see the module docstring)."""
    batched: bool
    """True: trains a group of `settings.batch` photos together for `settings.iterations` (and
    `settings.runs` per photo); False: one photo at a time, each written as soon as it is done."""
    unchecked: str = ""
    """Why an estimate of it may carry no trust verdict (for the record of the kernel training uses)."""

    def estimate(self, images: Sequence[np.ndarray], names: Sequence[str], settings: KernelSettings,
                 jpeg_tables: Sequence[np.ndarray | None], on_progress: Callable[[int], None] | None) -> list[KernelEstimate]:
        return self._implementation().estimate(images, names, settings, jpeg_tables, on_progress)

    def trust_of(self, report: dict) -> Trust | None:
        return self._implementation().trust_of(report)

    def _implementation(self) -> ModuleType:
        return importlib.import_module(self.module)


ESTIMATORS: dict[str, Estimator] = {entry.name: entry for entry in (
    Estimator("kernelgan", "the paper's KernelGAN", "realsr_fast.kernel_estimation.kernelgan.estimate", batched=True,
              unchecked="1 KernelGAN run per photo: trust needs 2 or more (--seeds 2)"),
    Estimator("spectral", "a Gaussian blur fitted to the photo's power spectrum",
              "realsr_fast.kernel_estimation.spectral", batched=False),
    Estimator("families", "Gaussian, defocus-disk and motion blurs fitted the same way, the likeliest kept, "
              "JPEG-aware (no training, seconds per photo; figures in docs/evaluation.md)",
              "realsr_fast.kernel_estimation.families", batched=False),
)}
"""The estimators by `--method` name."""
UNNAMED_REPORTS = "kernelgan"
"""The estimator of reports without a `method` (KernelGAN's reports name none)."""


def estimator_of(report: dict) -> Estimator | None:
    """The estimator whose estimate `report` (a `<photo>_report.json`) records; None for an unknown one."""
    return ESTIMATORS.get(report.get("method", UNNAMED_REPORTS))
