"""Which fp32 CPU backend, ncnn or torch, is faster on this machine: measured once, then cached.

Neither wins everywhere: on an AMD EPYC (AVX2, 2 threads) ncnn's Winograd 3x3 convolutions were
as fast as torch fp32 at 128 px and 1.5x faster at 256 px, while on an Intel Sapphire Rapids
(AVX-512, 2 threads) torch fp32 was 1.4x ncnn at 128 px (benchmarks/README.md). So `--backend
auto` times one 128 x 128 tile on each (after a small warm-up tile) the first time it needs the
answer, and keeps it per CPU model, thread count and model in the cache folder
(`calibration/fp32-cpu.json`); delete that file to measure again.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from realsr_fast.inference.backends import TileRunner, UpscalerSettings, cache_file, load_runner
from realsr_fast.io import write_json

logger = logging.getLogger(__name__)

#: Side of the timed tile: the size of a typical tile or small photo, where the two are closest.
CALIBRATION_TILE = 128


@dataclass(frozen=True)
class Fp32Timing:
    """Seconds for one CALIBRATION_TILE tile on each fp32 CPU backend."""

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


def measure(settings: UpscalerSettings) -> Fp32Timing:
    """Time both fp32 CPU backends on `settings.model` (a few seconds)."""
    cpu = torch.device("cpu")
    seconds = {}
    for backend in ("ncnn", "torch"):
        runner = load_runner(UpscalerSettings(settings.model, "cpu", "fp32", backend=backend), cpu)
        seconds[backend] = time_tile(runner, CALIBRATION_TILE)
    return Fp32Timing(**seconds)


def fp32_timing(settings: UpscalerSettings, path: Path | None = None) -> Fp32Timing:
    """The cached timing for this machine and model, measured (and cached) when missing."""
    path = path or cache_file("calibration", "fp32-cpu.json")
    key = machine_key(settings.model)
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    try:
        return Fp32Timing(**cached[key])
    except (KeyError, TypeError):
        pass
    logger.warning("backend auto: timing ncnn and torch fp32 on this CPU once (a few seconds)")
    timing = measure(settings)
    write_json(path, {**cached, key: {"ncnn": timing.ncnn, "torch": timing.torch}})
    return timing
