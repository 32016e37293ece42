"""`Upscaler`: load a model once, then upscale images of any size, tile by tile.

Precision: fp32 on the CPU by default, bf16 on the CPU on request (about 4x faster on CPUs with
AMX / AVX512-BF16); fp16 by default on CUDA, where RRDBNet can overflow (REFERENCE.md §10): each
tile's output is checked and a tile that is not finite is run again in fp32.
"""
from __future__ import annotations

import logging
import os
from typing import Callable

import numpy as np
import torch

from realsr_fast.tiling.tiler import DEFAULT_TILE_PAD
from realsr_fast.device import resolve_device
from realsr_fast.errors import RealSRError
from realsr_fast.tiling.tiler import check_batch, upscale_tiled_retrying
from realsr_fast.tiling.tile_size import auto_tile
from realsr_fast.models.formats import model_from_state
from realsr_fast.models.rrdbnet import RRDBNet
from realsr_fast.models.zoo import DEFAULT_MODEL, resolve_weights

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); True when unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> fp16 on CUDA, fp32 on the CPU; fp16 is refused on the CPU."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 will be slower "
                       "than fp32")
    if precision not in DTYPES:
        raise RealSRError(f"unknown precision {precision!r}: use auto, {', '.join(DTYPES)}")
    if precision == "fp16" and device.type == "cpu":
        raise RealSRError("fp16 runs on CUDA only; on the CPU use bf16 (fast) or fp32 (exact)")
    return precision


class Upscaler:
    """An RRDBNet ready to upscale (weights loaded once, reused across images).

    >>> up = Upscaler("df2k", device="cpu")          # doctest: +SKIP
    >>> up(np.zeros((32, 48, 3), np.uint8)).shape     # doctest: +SKIP
    (128, 192, 3)
    """

    scale: int
    device: torch.device
    precision: str

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, device: str = "auto",
                 precision: str = "auto", tile: int | None = None, tile_pad: int = DEFAULT_TILE_PAD) -> None:
        if tile is not None and tile < 1:
            raise RealSRError(f"tile must be a positive number of pixels (or None), got {tile}")
        if tile_pad < 0:
            raise RealSRError(f"tile padding must be >= 0, got {tile_pad}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.tile, self.tile_pad = tile, tile_pad
        self._state, self._config = resolve_weights(model)
        if self._config["in_nc"] != 3 or self._config["out_nc"] != 3:
            raise RealSRError(f"model {model} maps {self._config['in_nc']} channels to "
                              f"{self._config['out_nc']}; an upscaler needs RGB -> RGB")
        self.scale = self._config["scale"]
        self._model = self._build(DTYPES[self.precision])
        self._fp32_model: RRDBNet | None = self._model if self.precision == "fp32" else None

    def _build(self, dtype: torch.dtype) -> RRDBNet:
        return model_from_state(self._state, self._config).requires_grad_(False).to(
            self.device, dtype, memory_format=torch.channels_last)

    def _run_tile(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) float -> (B, 3, s*h, s*w) float32 in [0, 1] on self.device."""
        x = x.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self._model(x.to(DTYPES[self.precision]))
            if self.precision != "fp32" and not bool(torch.isfinite(y).all()):
                y = self._fp32()(x)
            return y.float().clamp_(0, 1)

    def _fp32(self) -> RRDBNet:
        """The fp32 model for tiles that overflow in reduced precision (built once, when needed)."""
        if self._fp32_model is None:
            logger.warning("a tile overflowed in %s; such tiles are redone in fp32 (slower)",
                           self.precision)
            self._fp32_model = self._build(torch.float32)
        return self._fp32_model

    def tile_size(self, batch: int, height: int, width: int) -> int | None:
        """The tile side used for a (batch, 3, height, width) input; None means no tiling."""
        if self.tile is not None:
            return self.tile
        return auto_tile(batch, height, width, self.tile_pad, self.device,
                         DTYPES[self.precision].itemsize, self._config["nf"], self.scale)

    def upscale_tensor(self, x: torch.Tensor,
                       progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """x (B, 3, H, W) float in [0, 1] (any device) -> (B, 3, scale*H, scale*W) float32 in
        [0, 1] on the CPU. progress(done_tiles, total_tiles) is called after each tile."""
        check_batch(x)
        tile = self.tile_size(x.shape[0], x.shape[2], x.shape[3])
        return upscale_tiled_retrying(x, self._run_tile, self.scale, tile, self.tile_pad, self.device,
                                      progress)

    def __call__(self, image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """(H, W, 3) uint8 or uint16 RGB numpy -> (scale*H, scale*W, 3) same dtype (rounded);
        a tensor (B, 3, H, W) or (3, H, W) float -> same rank float32 (CPU)."""
        if isinstance(image, torch.Tensor):
            if image.dim() == 3:
                return self.upscale_tensor(image.unsqueeze(0))[0]
            return self.upscale_tensor(image)
        from realsr_fast.io import image_to_tensor, tensor_to_image

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, np.uint16):
            raise RealSRError(f"expected an (H, W, 3) uint8 or uint16 RGB array, got {image.dtype} "
                              f"of shape {image.shape} (grey and alpha images: "
                              "realsr_fast.inference.upscale_files.upscale_array)")
        return tensor_to_image(self.upscale_tensor(image_to_tensor(image)), image.dtype)
