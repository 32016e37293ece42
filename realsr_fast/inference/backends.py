"""ONNX Runtime and TensorRT behind the `Upscaler` interface (`scale`, `device`, `precision`,
`upscale_tensor`), over the same tiler as the torch backend.

Without an explicit graph or engine file, the model's ONNX graph / TensorRT engine is built once
and kept in the cache folder (`$REALSR_FAST_HOME`), named by the weights' hash (and, for engines,
the GPU and TensorRT version), so a later run reuses it.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from realsr_fast.errors import RealSRError
from realsr_fast.tiling.tiler import TileFn, check_batch, upscale_tiled_retrying
from realsr_fast.tiling.tile_size import auto_tile

if TYPE_CHECKING:
    from realsr_fast.models.rrdbnet import RRDBNet

logger = logging.getLogger(__name__)

class TiledBackend:
    """A tile function with the Upscaler interface: `upscale_tensor(x (B, 3, H, W) float in
    [0, 1]) -> (B, 3, s*H, s*W)` float32 on the CPU, tiled with `tile` (+ `tile_pad` context)."""

    def __init__(self, fn: TileFn, scale: int, device: torch.device, precision: str,
                 tile: int | None, tile_pad: int, nf: int) -> None:
        self.fn, self.scale, self.device, self.precision = fn, scale, device, precision
        self.tile, self.tile_pad, self.nf = tile, tile_pad, nf

    def upscale_tensor(self, x: torch.Tensor,
                       progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """x (B, 3, H, W) float in [0, 1] -> (B, 3, scale*H, scale*W) float32 on the CPU."""
        check_batch(x)
        tile = self.tile
        if tile is None:
            tile = auto_tile(*x.shape[:1], *x.shape[2:], self.tile_pad, self.device, 4, self.nf,
                             self.scale)
        return upscale_tiled_retrying(x.to(self.device, torch.float32), self.fn, self.scale, tile,
                                      self.tile_pad, self.device, progress)


def load_fp32_model(model: str | os.PathLike) -> tuple["RRDBNet", str]:
    """(RRDBNet in fp32 eval mode, its weights' sha256) for a model name or weights path."""
    from realsr_fast.export.onnx_export import weights_sha256
    from realsr_fast.models.rrdbnet import RRDBNet
    from realsr_fast.models.zoo import resolve_weights

    state, config = resolve_weights(model)
    network = RRDBNet(**config)
    network.load_state_dict(state)
    return network.eval().requires_grad_(False), weights_sha256(state)


def _cache_folder(kind: str) -> Path:
    from realsr_fast.models.zoo import cache_dir

    return cache_dir() / kind


def load_onnx_backend(model: str | os.PathLike, device: torch.device, precision: str,
                      tile: int | None, tile_pad: int,
                      onnx_path: str | os.PathLike | None = None) -> TiledBackend:
    """ONNX Runtime over `onnx_path`, or over the model's graph in the cache (exported once).

    precision: auto (fp16 with CUDA, else fp32), fp32 or fp16; with `onnx_path` the file's own."""
    from realsr_fast.inference.onnx_runner import OnnxRunner

    if precision == "bf16":
        raise RealSRError("the onnx backend runs fp32 or fp16 graphs; use --precision fp32 "
                          "(or the torch backend for bf16)")
    if onnx_path is None:
        from realsr_fast.export.onnx_export import export_onnx

        if precision == "auto":
            precision = "fp16" if device.type == "cuda" else "fp32"
        network, sha = load_fp32_model(model)
        onnx_path = _cache_folder("onnx") / f"{sha[:16]}-{precision}.onnx"
        if not onnx_path.is_file():
            logger.warning("exporting %s to %s (once)", model, onnx_path)
            export_onnx(network, onnx_path, precision=precision, tile_pad=tile_pad)
    runner = OnnxRunner(onnx_path, device)
    if precision not in ("auto", runner.info.precision):
        raise RealSRError(f"{onnx_path} is an {runner.info.precision} graph, but --precision "
                          f"{precision} was asked for; export another graph or drop --precision")
    return TiledBackend(runner, runner.scale, torch.device("cpu"), runner.info.precision,
                        tile, tile_pad, runner.info.nf)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def load_tensorrt_backend(model: str | os.PathLike, device: torch.device, tile: int | None,
                          tile_pad: int, engine_path: str | os.PathLike | None = None,
                          rebuild: bool = False, cuda_graph: bool = False) -> TiledBackend:
    """TensorRT over `engine_path` (built there when missing or when `rebuild`), or over the
    model's engine for this GPU in the cache. A tile that overflows in fp16 is redone in fp32 by
    torch."""
    from realsr_fast.export.tensorrt_build import (DEFAULT_PROFILE, Profile, Target,
                                                   export_tensorrt, read_sidecar, sidecar_path)
    from realsr_fast.inference.tensorrt_runner import TensorRTRunner
    from realsr_fast.inference.upscaler import Upscaler

    if device.type != "cuda":
        raise RealSRError("the tensorrt backend runs on an NVIDIA GPU; use --device cuda (or "
                          "auto), or --backend onnx / torch on the CPU")
    target = Target.current(device.index or 0)
    network, sha = load_fp32_model(model)
    if engine_path is None:
        engine_path = (_cache_folder("tensorrt") / f"{sha[:16]}-{_slug(target.gpu_name)}-"
                       f"trt{target.tensorrt_version}.engine")
    engine_path = Path(engine_path)
    if rebuild or not engine_path.is_file() or not sidecar_path(engine_path).is_file():
        profile = Profile(*DEFAULT_PROFILE)
        logger.warning("building the TensorRT engine %s (inputs %d-%d px; takes minutes)",
                       engine_path, profile.min, profile.max)
        export_tensorrt(network, engine_path, profile, engine_path.with_suffix(".timing"),
                        tile_pad, device.index or 0)
    fp32: list[Upscaler] = []

    def fallback(x: torch.Tensor) -> torch.Tensor:
        if not fp32:
            fp32.append(Upscaler(model, device=str(device), precision="fp32", tile_pad=tile_pad))
        return fp32[0].upscale_tensor(x)

    runner = TensorRTRunner(engine_path, device, sha, cuda_graph, fallback)
    tile = read_sidecar(engine_path).profile.tile_for(tile_pad, tile)
    return TiledBackend(runner, runner.scale, device, "fp16", tile, tile_pad, network.nf)
