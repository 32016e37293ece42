"""Tiled upscaling, independent of the backend that runs the network.

The image is cut into a grid of near-equal tiles of at most `tile` LR pixels a side; each tile is
run with `pad` extra LR pixels of context on every side (clipped at the image border), and only
its core is kept, so neighbouring outputs meet without a visible seam. Any callable mapping
`(B, C, h, w) -> (B, C, scale*h, scale*w)` can run the tiles (torch, ONNX Runtime, TensorRT).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import torch

from realsr_fast.errors import RealSRError
from realsr_fast.tiling.tile_size import MIN_TILE

logger = logging.getLogger(__name__)

TileFn = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Tile:
    """One tile in LR pixels: the core [y0, y1) x [x0, x1) and the padded input region."""

    y0: int
    y1: int
    x0: int
    x1: int
    py0: int
    py1: int
    px0: int
    px1: int


def _splits(length: int, tile: int) -> list[int]:
    """Boundaries of ceil(length / tile) near-equal parts of [0, length)."""
    count = max(1, math.ceil(length / tile))
    return [round(i * length / count) for i in range(count + 1)]


def plan_tiles(height: int, width: int, tile: int | None, pad: int) -> list[Tile]:
    """The tiles covering a height x width image, row by row; `tile=None` is one tile."""
    if tile is not None and tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    if pad < 0:
        raise ValueError(f"tile padding must be >= 0, got {pad}")
    ys = _splits(height, tile or height)
    xs = _splits(width, tile or width)
    return [Tile(y0, y1, x0, x1, max(y0 - pad, 0), min(y1 + pad, height),
                 max(x0 - pad, 0), min(x1 + pad, width))
            for y0, y1 in zip(ys, ys[1:]) for x0, x1 in zip(xs, xs[1:])]


def upscale_tiled(x: torch.Tensor, fn: TileFn, scale: int, tile: int | None, pad: int,
                  progress: Progress | None = None) -> torch.Tensor:
    """Run `fn` tile by tile over x (B, C, H, W) -> (B, C, scale*H, scale*W) float32 on the CPU.

    `fn` receives `(B, C, h, w)` slices of x (on x's device) and must return
    `(B, C, scale*h, scale*w)`; progress(done, total) is called after each tile.
    """
    batch, channels, height, width = x.shape
    tiles = plan_tiles(height, width, tile, pad)
    out = torch.empty(batch, channels, scale * height, scale * width, dtype=torch.float32)
    for done, t in enumerate(tiles, 1):
        y = fn(x[:, :, t.py0:t.py1, t.px0:t.px1])
        expected = (batch, channels, scale * (t.py1 - t.py0), scale * (t.px1 - t.px0))
        if tuple(y.shape) != expected:
            raise RuntimeError(f"the tile function returned {tuple(y.shape)}, expected {expected}")
        core = y[:, :, scale * (t.y0 - t.py0):scale * (t.y1 - t.py0),
                 scale * (t.x0 - t.px0):scale * (t.x1 - t.px0)]
        out[:, :, scale * t.y0:scale * t.y1, scale * t.x0:scale * t.x1] = core.float().cpu()
        if progress is not None:
            progress(done, len(tiles))
    return out


def check_batch(x: torch.Tensor) -> None:
    """Raise RealSRError unless x is a non-empty float (B, 3, H, W) tensor."""
    if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point() or 0 in x.shape:
        raise RealSRError(f"expected a non-empty float (B, 3, H, W) tensor, got {x.dtype} of shape "
                          f"{tuple(x.shape)}")


#: How out-of-memory errors read when they arrive as plain RuntimeErrors (cuDNN, cuBLAS, the CUDA
#: runtime and driver; torch's CPU allocator) rather than as torch.OutOfMemoryError.
_OOM_WORDS = ("out of memory", "CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED",
              "cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY", "DefaultCPUAllocator",
              "Cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` means the device ran out of memory: torch.OutOfMemoryError, MemoryError, or a
    RuntimeError whose message says so (cuDNN, cuBLAS and torch's CPU allocator report it that way)."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(word in str(exc) for word in _OOM_WORDS)


def upscale_tiled_retrying(x: torch.Tensor, fn: TileFn, scale: int, tile: int | None, pad: int,
                           device: torch.device, progress: Progress | None = None) -> torch.Tensor:
    """`upscale_tiled`, redone with tiles of half the side whenever `device` runs out of memory
    (down to MIN_TILE, then RealSRError). x (B, C, H, W) -> (B, C, scale*H, scale*W) float32, CPU."""
    height, width = x.shape[-2:]
    while True:
        try:
            return upscale_tiled(x, fn, scale, tile, pad, progress)
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(exc):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            side = tile or max(height, width)
            if side <= MIN_TILE:
                raise RealSRError(f"out of memory on {device} even with {side} px tiles; free some "
                                  "memory and try again") from exc
            tile = max(side // 2, MIN_TILE)
            logger.warning("out of memory on %s with %d px tiles; retrying with %d px", device, side, tile)
