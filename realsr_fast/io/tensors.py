"""Images as tensors: `(H, W, C)` uint8/uint16 arrays <-> `(1, C, H, W)` float32 in [0, 1].
torch is imported inside the functions, so that `realsr --help` does not wait for it."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from realsr_fast.io.reading import check_image_array

if TYPE_CHECKING:
    import torch


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """`(H, W, C)` uint8 or uint16 -> `(1, C, H, W)` float32 in [0, 1] (divided by 255 or 65535)."""
    import torch  # here, so that `realsr --help` does not wait for torch

    check_image_array(image)
    peak = float(np.iinfo(image.dtype).max)
    pixels = torch.from_numpy(np.ascontiguousarray(image).astype(np.float32))
    return (pixels / peak).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_image(x: torch.Tensor, dtype: type[np.integer] | np.dtype = np.uint8) -> np.ndarray:
    """`(1, C, H, W)` or `(C, H, W)` float in [0, 1] -> `(H, W, C)` uint8/uint16.

    Values are clamped to [0, 1] and rounded to the nearest level, ties to even (torch.round).
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"dtype must be uint8 or uint16, got {dtype}")
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image (1, C, H, W), got shape {tuple(x.shape)}")
        x = x[0]
    if x.dim() != 3:
        raise ValueError(f"expected (1, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    peak = float(np.iinfo(dtype).max)
    import torch

    # One float temporary (clamp copies, the rest is in place): outputs can be gigabytes.
    levels = x.detach().to("cpu", torch.float32).clamp(0, 1).mul_(peak).round_()
    return levels.permute(1, 2, 0).numpy().astype(dtype)
