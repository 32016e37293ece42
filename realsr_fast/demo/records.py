"""What the demo works on and keeps: its scale, LR recipes and methods, and the records of a run.

Shared by the job (:mod:`realsr_fast.demo.pipeline`) and its report (:mod:`realsr_fast.demo.sections`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realsr_fast.data.recipes import RECIPES
from realsr_fast.demo.adapted import AdaptedModel
from realsr_fast.evaluate import Evaluation

SCALE = 4
LR_RECIPES = {name: RECIPES[name].description for name in ("kernel+noise", "bicubic+noise")}
"""The degradations shown, each with what it is (Degrader recipe names)."""
METHODS = ("bicubic", "realsr")
METHOD_TITLES = {"bicubic": "bicubic x4", "realsr": "RealSR x4", "adapted": "adapted x4"}
ADAPTED_RECIPE = "kernel+noise"
"""The degradation the adapted model is trained for and shown on (the photos' own kernels and noise)."""
ADAPTED_METHODS = ("bicubic", "realsr", "adapted")


@dataclass
class StageTime:
    """How long one stage took and what it did."""

    name: str
    seconds: float
    detail: str


@dataclass
class Pair:
    """One degraded pair: the file stem, `(H, W, 3)` uint8 HR and `(H/4, W/4, 3)` LR, and what made the LR."""

    name: str
    hr: np.ndarray
    lr: np.ndarray
    kernel: str
    """The kernel file, or "bicubic"."""
    noise_file: Path
    noise_offset: tuple[int, int]
    """`(oy, ox)`: top-left corner of the noise crop in the patch."""

    def choices(self) -> dict[str, object]:
        """The kernel and noise crop that made the LR, JSON-ready."""
        return {"kernel": self.kernel, "noise": str(self.noise_file), "noise_offset": list(self.noise_offset)}


Pairs = dict[str, list[Pair]]
"""The pairs of each LR recipe."""
Outputs = dict[str, dict[str, dict[str, np.ndarray]]]
"""`outputs[recipe][method][name]`: `(H, W, 3)` uint8 x4 results."""


@dataclass
class DemoResult:
    """What :func:`~realsr_fast.demo.pipeline.run_demo` made: the report's path, the stage timings,
    the scores per LR recipe and method."""

    out_dir: Path
    report: Path
    timings: list[StageTime] = field(default_factory=list)
    evaluations: dict[str, dict[str, Evaluation]] = field(default_factory=dict)
    adapted: AdaptedModel | None = None
    held_out_evaluations: dict[str, Evaluation] = field(default_factory=dict)
    """:data:`ADAPTED_METHODS`' scores on the held-out photos' :data:`ADAPTED_RECIPE` LR images."""
