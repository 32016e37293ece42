"""Which fp32 CPU backend, ncnn or torch, is faster on this machine for a tile size: measured once, cached.

Neither need win everywhere, and the winner can change with the tile size. On an AMD EPYC (AVX2,
2 threads), with stock convolutions, torch fp32 was 1.08x ncnn at 128 px while ncnn's Winograd was
1.04-1.40x torch at 256 px; since torch runs its trunk as Winograd F(6x6, 3x3) too, torch was
1.42x ncnn at 128 px and 1.78x at 256 px there (benchmarks/README.md, "Upscale by size"). On other
CPUs (ARM, where ncnn is tuned most) the order is unmeasured. So `--backend auto` times one tile of each
side in `CALIBRATION_SIDES` on each backend (after a small warm-up tile) the first time a tile
near that side is run, and keeps the answer per CPU model, thread count, model and side in the
cache folder (`calibration/fp32-cpu.json`); delete that file to measure again.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from realsr_fast.inference.backends import TileRunner, UpscalerSettings, cache_file, load_runner
from realsr_fast.io import write_json

logger = logging.getLogger(__name__)

#: Sides of the timed tiles: a small photo or tile, and a large one. A tile is run by the backend
#: that was faster at the nearest of them (in ratio); larger tiles behave like 256 px ones.
CALIBRATION_SIDES = (128, 256)
#: Timed runs per backend, interleaved (ncnn, torch, ncnn, torch), the fastest kept: near 256 px the
#: two are close, and one timing on a shared machine picked ncnn (1.40x) where a benchmark of the
#: same size had torch 1.20x faster (benchmarks/README.md, "Upscale by size").
TIMED_RUNS = 2
#: Part of the cache key, raised when a backend's fp32 path changes so that old timings are not
#: reused (2: torch fp32 runs its trunk as Winograd F(6x6, 3x3)).
PATHS_REVISION = 2


@dataclass(frozen=True)
class Fp32Timing:
    """Seconds for one calibration tile on each fp32 CPU backend."""

    ncnn: float
    torch: float

    @property
    def faster(self) -> str:
        return "ncnn" if self.ncnn <= self.torch else "torch"


def machine_key(model: object) -> str:
    """What the answer depends on: the CPU model, torch's thread count, and the model."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu} | {torch.get_num_threads()} threads | {model}"


def time_tile(runner: TileRunner, side: int) -> float:
    """Seconds for `runner` on one (1, 3, side, side) tile, after a warm-up on a small one."""
    generator = torch.Generator().manual_seed(0)
    runner(torch.rand(1, 3, 16, 16, generator=generator))
    x = torch.rand(1, 3, side, side, generator=generator)
    start = time.perf_counter()
    runner(x)
    return time.perf_counter() - start


def nearest_side(side: int) -> int:
    """The calibrated side closest to a tile of `side` px (closest in ratio)."""
    return min(CALIBRATION_SIDES, key=lambda timed: abs(math.log(max(side, 1) / timed)))


def measure(settings: UpscalerSettings, side: int) -> Fp32Timing:
    """Time both fp32 CPU backends on `settings.model` on a `side` x `side` tile (seconds to minutes):
    `TIMED_RUNS` runs each, interleaved, the fastest of each kept."""
    cpu = torch.device("cpu")
    runners = {backend: load_runner(UpscalerSettings(settings.model, "cpu", "fp32", backend=backend), cpu)
               for backend in ("ncnn", "torch")}
    seconds = {backend: math.inf for backend in runners}
    for _ in range(TIMED_RUNS):
        for backend, runner in runners.items():
            seconds[backend] = min(seconds[backend], time_tile(runner, side))
    return Fp32Timing(**seconds)


def fp32_timing(settings: UpscalerSettings, side: int, path: Path | None = None) -> Fp32Timing:
    """The cached timing on a `side` px tile (one of `CALIBRATION_SIDES`) for this machine and model,
    measured (and cached) when missing."""
    path = path or cache_file("calibration", "fp32-cpu.json")
    key = f"{machine_key(settings.model)} | {side} px | paths r{PATHS_REVISION}"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    try:
        return Fp32Timing(**cached[key])
    except (KeyError, TypeError):
        pass
    logger.warning("backend auto: timing ncnn and torch fp32 on a %d px tile on this CPU, once", side)
    timing = measure(settings, side)
    write_json(path, {**cached, key: {"ncnn": timing.ncnn, "torch": timing.torch}})
    return timing
