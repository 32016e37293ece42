"""`--backend auto`: the fastest correct backend and precision for the machine at hand.

The rule, from benchmarks/bench_upscale.py (table in benchmarks/README.md, "Upscale by size"):
- a Vulkan device asked for (`--device vulkan[:N]`): ncnn, the only backend that runs there;
- CUDA: torch (fp16 by default, fp32 redo of overflowing tiles);
- `--device auto` without CUDA but with a Vulkan GPU (AMD, Intel, Apple; not a software one)
  and an ncnn model: ncnn on that GPU;
- a CPU that computes bf16 natively (AVX512-BF16 or AMX), precision auto: torch bf16 (2x ncnn
  fp32 and 3x torch fp32 with stock convolutions on a Sapphire Rapids; against the Winograd fp32
  trunk unmeasured; >= 40 dB from fp32);
- otherwise fp32: for each tile, whichever of torch (its trunk as Winograd F(6x6, 3x3)) and ncnn
  (needs the model in ncnn form) was faster on this CPU for tiles of about that size, timed once
  per size and cached (`inference.calibration`; `PerTileSize` runs it).
`--precision bf16` / `fp16` always mean torch. Every choice can be forced with `--backend`.
The choice and its reason are logged in one line.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from realsr_fast.errors import RealSRError
from realsr_fast.inference.backends import TileRunner, UpscalerSettings
from realsr_fast.inference.backends import load_runner as load_backend
from realsr_fast.inference.calibration import CALIBRATION_SIDES, Fp32Timing, fp32_timing, nearest_side
from realsr_fast.inference.torch_runner import cpu_has_native_bf16

logger = logging.getLogger(__name__)


#: `Choice.backend` when ncnn or torch is picked per tile by its size (`PerTileSize`).
PER_TILE_SIZE = "ncnn|torch by tile size"


@dataclass(frozen=True)
class Choice:
    """A backend and precision picked for the settings, with the reason in words."""

    backend: str
    precision: str
    device: str
    reason: str


def _ncnn_ready(model) -> str | None:
    """None when the ncnn backend can run `model` here, else why not."""
    from realsr_fast.inference.ncnn_runner import import_ncnn, ncnn_files

    try:
        import_ncnn()
        ncnn_files(model)
    except RealSRError as exc:
        return str(exc)
    return None


def choose(settings: UpscalerSettings, device: torch.device) -> Choice:
    """What `--backend auto` runs for `settings` on the resolved `device`."""
    precision, asked = settings.precision, settings.device
    if asked.startswith("vulkan"):
        return Choice("ncnn", precision, asked, f"--device {asked} runs on ncnn")
    if device.type == "cuda":
        return Choice("torch", precision, asked, "CUDA: torch")
    if precision in ("bf16", "fp16"):
        return Choice("torch", precision, asked, f"--precision {precision} runs on torch")
    why_not = _ncnn_ready(settings.model)
    if asked == "auto" and precision == "auto" and why_not is None:
        from realsr_fast.inference.ncnn_runner import vulkan_index

        gpu = vulkan_index("auto")
        if gpu is not None:
            return Choice("ncnn", "auto", f"vulkan:{gpu}", "a Vulkan GPU and no CUDA: ncnn on it")
    if precision == "auto" and cpu_has_native_bf16():
        return Choice("torch", "bf16", asked, "this CPU computes bf16 natively (AVX512-BF16/AMX): "
                      "torch bf16 is ~2x ncnn fp32; --precision fp32 for exact")
    if why_not is None:
        sides = " and ".join(str(side) for side in CALIBRATION_SIDES)
        return Choice(PER_TILE_SIZE, "fp32", "cpu",
                      f"fp32 on the CPU: each tile on ncnn or torch, whichever was the faster here on tiles "
                      f"of about its size, timed once at {sides} px")
    return Choice("torch", "fp32", asked, f"fp32 on the CPU: torch, as ncnn cannot run it ({why_not})")


def load_runner(settings: UpscalerSettings, device: torch.device) -> TileRunner:
    """The runner of the chosen backend, after one log line saying what was chosen and why."""
    choice = choose(settings, device)
    logger.warning("backend auto: %s %s on %s (%s)", choice.backend, choice.precision, choice.device,
                   choice.reason)
    if choice.backend == PER_TILE_SIZE:
        return PerTileSize(replace(settings, precision="fp32", device="cpu"), device)
    return load_backend(replace(settings, backend=choice.backend, precision=choice.precision,
                                device=choice.device), device)


class PerTileSize(TileRunner):
    """fp32 on the CPU through ncnn or torch, picked for each tile by the calibration nearest its size.

    ncnn is loaded at once (it describes the model: scale, width), torch when a tile first needs it.
    The tiles of a grid are within a pixel of each other (`tiling.tiler`), so one image normally
    runs on one backend.
    """

    def __init__(self, settings: UpscalerSettings, device: torch.device) -> None:
        self._settings = settings
        self._device = device
        self._runners: dict[str, TileRunner] = {}
        first = self._runner("ncnn")
        self.scale, self.nf, self.device, self.precision = first.scale, first.nf, first.device, "fp32"
        self.itemsize = first.itemsize
        self._timings: dict[int, Fp32Timing] = {}  # per calibrated side: the cache file is read once

    def _runner(self, backend: str) -> TileRunner:
        if backend not in self._runners:
            self._runners[backend] = load_backend(replace(self._settings, backend=backend), self._device)
        return self._runners[backend]

    def backend_for(self, height: int, width: int) -> str:
        """"ncnn" or "torch": the faster one here on tiles of about `height` x `width` (timed once)."""
        side = nearest_side(round((height * width) ** 0.5))
        timing = self._timings.get(side)
        if timing is None:
            timing = self._timings[side] = fp32_timing(self._settings, side)
            logger.warning("backend auto: %s for tiles near %d px (ncnn %.2f s vs torch %.2f s on a %d px tile)",
                           timing.faster, side, timing.ncnn, timing.torch, side)
        return timing.faster

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) float tile -> (B, 3, scale*h, scale*w) float32 in [0, 1], on the chosen backend."""
        return self._runner(self.backend_for(x.shape[-2], x.shape[-1]))(x)
