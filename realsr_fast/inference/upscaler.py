"""`Upscaler`: load a model once on a backend, then upscale images of any size, tile by tile.

The backend (torch, ONNX Runtime, TensorRT, ncnn: `inference.backends.BACKENDS`) only runs tiles; the
upscaler owns everything around them, the same for all: the tile grid and its context pad, the
automatic tile size, the out-of-memory retry with smaller tiles, and the numpy path (grey, alpha,
8- and 16-bit images).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

from realsr_fast.device import resolve_device
from realsr_fast.errors import RealSRError
from realsr_fast.inference.backends import DEFAULT_STRENGTH_BASE, UpscalerSettings, load_runner
from realsr_fast.inference.output_size import resize_output
from realsr_fast.io import image_to_tensor, tensor_to_image
from realsr_fast.models import DEFAULT_MODEL
from realsr_fast.tiling import DEFAULT_TILE_PAD
from realsr_fast.tiling.tile_size import auto_tile, bytes_per_pixel
from realsr_fast.tiling.tiler import check_batch, upscale_tiled_retrying

Progress = Callable[[int, int], None]


class Upscaler:
    """An RRDBNet ready to upscale (weights loaded once, reused across images).

    The arguments, `backend`'s own options among them (keywords such as `onnx`, `engine`,
    `cuda_graph`: the backend's `BackendOption`s in `inference.backends.BACKENDS`), are those of
    :class:`realsr_fast.inference.backends.UpscalerSettings`; `Upscaler.from_settings` takes such
    a value as it is.

    >>> up = Upscaler("df2k", device="cpu")          # doctest: +SKIP
    >>> up(np.zeros((32, 48, 3), np.uint8)).shape     # doctest: +SKIP
    (128, 192, 3)
    """

    scale: int
    device: torch.device
    precision: str

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, device: str = "auto",
                 precision: str = "auto", tile: int | None = None, tile_pad: int = DEFAULT_TILE_PAD,
                 backend: str = "torch", strength: float = 1.0, strength_base: str | os.PathLike = DEFAULT_STRENGTH_BASE,
                 **backend_options) -> None:
        self._load(UpscalerSettings(model, device, precision, tile, tile_pad, backend, strength, strength_base,
                                    backend_options))

    @classmethod
    def from_settings(cls, settings: UpscalerSettings) -> Upscaler:
        """The upscaler that `settings` (already checked) describes."""
        upscaler = cls.__new__(cls)
        upscaler._load(settings)
        return upscaler

    def _load(self, settings: UpscalerSettings) -> None:
        self._runner = load_runner(settings, resolve_device(settings.torch_device))
        self.scale, self.device, self.precision = self._runner.scale, self._runner.device, self._runner.precision
        self.tile, self.tile_pad = self._runner.tile_for(settings.tile, settings.tile_pad), settings.tile_pad

    def tile_size(self, batch: int, height: int, width: int) -> int | None:
        """The tile side used for a (batch, 3, height, width) input; None means no tiling."""
        if self.tile is not None:
            return self.tile
        return auto_tile(batch, height, width, self.tile_pad, self.device, self._pixel_bytes)

    @property
    def _pixel_bytes(self) -> int:
        """Planned memory per LR pixel of a tile: the network's activations and the runner's workspace."""
        return bytes_per_pixel(self._runner.nf, self.scale, self._runner.itemsize) + self._runner.workspace_bytes_per_pixel

    def planned_bytes(self, batch: int, height: int, width: int) -> int:
        """The memory this upscaler is planned to use on its device for a (batch, 3, height, width)
        input: the weights it holds, the peak of its largest tile (core and context pad) and the
        upscaled result."""
        tile = self.tile_size(batch, height, width)
        tile_h, tile_w = (height, width) if tile is None else (min(height, tile + 2 * self.tile_pad),
                                                                min(width, tile + 2 * self.tile_pad))
        # The float32 result, and one temporary of its size while it is converted for the caller.
        output = 2 * batch * 3 * self.scale**2 * height * width * 4
        return self._runner.resident_bytes + batch * tile_h * tile_w * self._pixel_bytes + output

    def upscale_tensor(self, x: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
        """x (B, 3, H, W) float in [0, 1] (any device) -> (B, 3, scale*H, scale*W) float32 in
        [0, 1] on the CPU. progress(done_tiles, total_tiles) is called after each tile.

        Safe to call from several threads at once (each call has its own buffers); between calls
        the upscaler holds its weights and at most small buffers (`TileRunner.release`)."""
        check_batch(x)
        tile = self.tile_size(x.shape[0], x.shape[2], x.shape[3])
        try:
            return upscale_tiled_retrying(x, self._runner, self.scale, tile, self.tile_pad, self.device,
                                          progress)
        finally:
            self._runner.release()

    def upscale_image(self, image: np.ndarray, dtype: type[np.integer] | np.dtype | None = None,
                      progress: Progress | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        """Upscale an `(H, W, C)` uint8/uint16 image to `(s*H, s*W, C)` of `dtype` (default: same).

        With `size` (out_h, out_w) the model's output is then resized to exactly that size
        (`inference.output_size.resize_output`: antialiased bicubic in linear light);
        `OutputSize(...).pixels(H, W, self.scale)` turns --outscale / --width / --height into one.

        Grey (C 1 or 2) runs the model on grey replicated to RGB and keeps the mean of the three
        output channels, so grey stays grey. Alpha (C 2 or 4) is upscaled bicubically, not by the
        model: the model is trained on noisy photos, and on a mask it turns opaque 255 into
        251-253 (the whole image becomes slightly see-through) and rings at edges; bicubic keeps
        flat alpha exact and costs nothing next to the model.
        """
        x = image_to_tensor(image)  # (1, C, H, W)
        channels = x.shape[1]
        colour = x[:, :1].expand(-1, 3, -1, -1) if channels <= 2 else x[:, :3]
        y = self.upscale_tensor(colour.contiguous(), progress)  # (1, 3, sH, sW)
        if channels <= 2:
            y = y.mean(dim=1, keepdim=True)
        if channels in (2, 4):
            alpha = torch.nn.functional.interpolate(x[:, -1:], size=y.shape[2:], mode="bicubic",
                                                    align_corners=False)
            y = torch.cat([y, alpha], dim=1)
        if size is not None:
            y = resize_output(y, size, alpha=channels in (2, 4))
        return tensor_to_image(y, image.dtype if dtype is None else dtype)

    def __call__(self, image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """(H, W, 3) uint8 or uint16 RGB numpy -> (scale*H, scale*W, 3) same dtype (rounded);
        a tensor (B, 3, H, W) or (3, H, W) float -> same rank float32 (CPU)."""
        if isinstance(image, torch.Tensor):
            if image.dim() == 3:
                return self.upscale_tensor(image.unsqueeze(0))[0]
            return self.upscale_tensor(image)
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, np.uint16):
            raise RealSRError(f"expected an (H, W, 3) uint8 or uint16 RGB array, got {image.dtype} "
                              f"of shape {image.shape} (grey and alpha images: Upscaler.upscale_image)")
        return self.upscale_image(image)
