"""The inference backends: one table from a backend's name to the runner module that loads it.

A runner runs the network on one tile; the `Upscaler` does everything around it (tiling, the tile
size, the out-of-memory retry, the numpy path). A new backend is one runner module with a
`load_runner(settings, device) -> TileRunner` function, and one entry in `BACKENDS`.

Light on purpose (no torch): the CLI reads `BACKENDS` for its `--backend` choices.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from realsr_fast.errors import RealSRError
from realsr_fast.models import DEFAULT_MODEL
from realsr_fast.tiling import DEFAULT_TILE_PAD

if TYPE_CHECKING:
    import torch

#: Backend name -> the module whose `load_runner` builds its runner (imported when used).
BACKENDS: dict[str, str] = {
    "torch": "realsr_fast.inference.torch_runner",
    "onnx": "realsr_fast.inference.onnx_runner",
    "tensorrt": "realsr_fast.inference.tensorrt_runner",
    "ncnn": "realsr_fast.inference.ncnn_runner",
    "auto": "realsr_fast.inference.auto_choice",  # picks one of the above by measurement
}


#: The PSNR-oriented model that `--strength` below 1 blends with (ESRGAN's, fetched on first use).
DEFAULT_STRENGTH_BASE = "esrgan-psnr"


@dataclass(frozen=True)
class UpscalerSettings:
    """Everything that picks and configures an upscaler; checked when made, before any loading.

    `backend` auto picks one of the others for the machine (`inference.auto_choice`); device
    `vulkan` / `vulkan:N` is for backends ncnn and auto.
    `onnx` (a graph from `realsr export onnx`) is for backend onnx; `engine`, `rebuild_engine`
    and `cuda_graph` are for backend tensorrt. Without a graph or engine file, the model's is
    built once and kept in the cache folder, named by the weights' hash.
    `strength` below 1 runs `model` interpolated with `strength_base` (a PSNR-oriented model of
    the same architecture): every weight (1 - strength) * base + strength * model
    (`models.interpolate`); every backend then loads that blend as a weights file
    (`with_strength_applied`).
    """

    model: str | os.PathLike = DEFAULT_MODEL
    device: str = "auto"
    precision: str = "auto"
    tile: int | None = None
    tile_pad: int = DEFAULT_TILE_PAD
    backend: str = "torch"
    onnx: str | os.PathLike | None = None
    engine: str | os.PathLike | None = None
    rebuild_engine: bool = False
    cuda_graph: bool = False
    strength: float = 1.0
    strength_base: str | os.PathLike = DEFAULT_STRENGTH_BASE

    def __post_init__(self) -> None:
        if not 0 <= self.strength <= 1:  # also false for nan
            raise RealSRError(f"--strength must be from 0 to 1, got {self.strength}")
        if self.strength < 1 and (self.onnx is not None or self.engine is not None):
            raise RealSRError("--strength blends model weights, but a given --onnx graph or --engine has "
                              "its weights built in; drop --onnx/--engine (the blend is exported once and cached)")
        if self.tile is not None and self.tile < 1:
            raise RealSRError(f"tile must be a positive number of pixels (or None), got {self.tile}")
        if self.tile_pad < 0:
            raise RealSRError(f"tile padding must be >= 0, got {self.tile_pad}")
        if self.backend not in BACKENDS:
            raise RealSRError(f"unknown backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        if self.device.startswith("vulkan") and self.backend not in ("ncnn", "auto"):
            raise RealSRError(f"--device {self.device} runs on the ncnn backend; add --backend ncnn")
        if self.onnx is not None and self.backend != "onnx":
            raise RealSRError("--onnx names a graph for --backend onnx; add --backend onnx")
        if (self.engine is not None or self.rebuild_engine or self.cuda_graph) and self.backend != "tensorrt":
            raise RealSRError("--engine, --rebuild-engine and --cuda-graph are options of "
                              "--backend tensorrt; add --backend tensorrt")


class TileRunner:
    """What a backend provides: `runner(x)` maps a (B, 3, h, w) float tile (any device) to
    (B, 3, scale*h, scale*w) float32 in [0, 1]. `device` is where the tile's memory is budgeted
    (and out-of-memory retried); `itemsize` the bytes per activation; `nf` the model's width."""

    scale: int
    nf: int
    device: torch.device
    precision: str
    itemsize: int = 4
    #: Bytes per LR pixel of a tile that the runner uses beside the network's activations.
    workspace_bytes_per_pixel: int = 0

    def tile_for(self, tile: int | None, pad: int) -> int | None:
        """The tile side to use when `tile` is asked for (None: chosen per image from memory)."""
        return tile

    @property
    def resident_bytes(self) -> int:
        """Bytes the runner holds between calls (its weights) where tiles are budgeted."""
        return 0

    def release(self) -> None:
        """Free what the runner keeps for the next call when it is large (called after each image)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def load_runner(settings: UpscalerSettings, device: torch.device) -> TileRunner:
    """The runner of `settings.backend` on `device` (its module imported now).

    A weights file of another architecture than RRDBNet (`models.formats.NotRRDBNetError`) runs
    through spandrel on the torch backend when spandrel is installed (`inference.spandrel_runner`);
    without it, or on another backend, the error names what the file is."""
    from realsr_fast.models.formats import NotRRDBNetError

    settings = with_strength_applied(settings)
    try:
        return importlib.import_module(BACKENDS[settings.backend]).load_runner(settings, device)
    except NotRRDBNetError as refused:
        if settings.backend != "torch":  # auto reaches here through its torch choice
            raise
        from realsr_fast.inference import spandrel_runner

        return spandrel_runner.load_runner(settings, device, refused)


def with_strength_applied(settings: UpscalerSettings) -> UpscalerSettings:
    """`settings` whose model is the blend that `strength` asks for, and strength 1.

    Strength 1 changes nothing (the base is never fetched); 0 is the base model itself; between,
    the blended weights file (`models.interpolate.blended_model_file`, cached). For backends ncnn
    and auto (which may pick ncnn) that file is an ncnn pair with fp32 weights, exported once beside
    the blend: ncnn runs only ncnn files, and every other backend reads them too."""
    if settings.strength >= 1:
        return settings
    if settings.strength == 0:
        return replace(settings, model=settings.strength_base, strength=1.0)
    from realsr_fast.models.interpolate import blended_model_file

    model = blended_model_file(settings.model, settings.strength_base, settings.strength)
    if settings.backend in ("ncnn", "auto"):
        model = _as_ncnn(model)
    return replace(settings, model=model, strength=1.0)


def _as_ncnn(weights: Path) -> Path:
    """The .param of `weights` exported as an ncnn pair beside it (once; fp32 weights)."""
    param = weights.with_suffix(".param")
    if not (param.is_file() and param.with_suffix(".bin").is_file()):  # the .bin is written first
        from realsr_fast.export.ncnn_export import export_ncnn
        from realsr_fast.models.loading import load_model

        export_ncnn(load_model(weights), param)
    return param


def cache_file(kind: str, name: str) -> Path:
    """Where a built graph or engine of `kind` (onnx, tensorrt) is kept between runs."""
    from realsr_fast.models.zoo import cache_dir

    return cache_dir() / kind / name
