"""`patch_stats`: grey mean and variance of every patch, for noise mining (docs/METHOD.md §4); its
fake, and `patch_stats_reference` (with `grey_reference`), the same composed from stock PyTorch."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import realsr_fast.ops._library  # noqa: F401  (loads the compiled library, which defines the ops)
from realsr_fast.errors import RealSRError


def patch_stats(img: torch.Tensor, patch: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey mean and population variance (0..255 scale) of every patch.

    Grey is PIL's 'L' conversion for 3-channel uint8 images (an integer), 0.299 R + 0.587 G +
    0.114 B for float images in [0, 1] (scaled by 255), and a single channel as it is. The cost per
    pixel does not depend on the patch size, and uint8 statistics are exact to float32 rounding.

    Args:
        img: ``(B, C, H, W)`` with C = 1 or 3; uint8 or float16/bfloat16/float32 in [0, 1].
        patch: patch side (1..2048).
        stride: step between patches; patches start at 0, stride, 2*stride... and lie fully inside.

    Returns:
        ``(mean, var)``, each ``(B, nh, nw)`` float32 with ``nh = (H - patch) // stride + 1``
        (0 when the image is smaller than a patch).

    Example:
        >>> img = torch.randint(0, 256, (1, 3, 600, 800), dtype=torch.uint8)
        >>> mean, var = patch_stats(img, 256, 256)
        >>> mean.shape
        torch.Size([1, 2, 3])
    """
    try:
        return torch.ops.realsr_fast.patch_stats(img, patch, stride)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def _patch_stats_fake(img, patch, stride):
    torch._check(img.dim() == 4, lambda: f"patch_stats: img must be (B, C, H, W), got {tuple(img.shape)}")
    batch, _, height, width = img.shape
    out_h = (height - patch) // stride + 1 if height >= patch else 0
    out_w = (width - patch) // stride + 1 if width >= patch else 0
    mean = img.new_empty((batch, out_h, out_w), dtype=torch.float32)
    return mean, torch.empty_like(mean)


#: Fake (meta) implementations for torch.compile, registered by `realsr_fast.ops` (see its docstring).
FAKES = {
    "realsr_fast::patch_stats": _patch_stats_fake,
}


def grey_reference(img: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H, W)`` float64 grey on the 0..255 scale, as patch_stats defines it."""
    if img.dtype == torch.uint8:
        if img.shape[1] == 1:
            return img[:, 0].double()
        r, g, b = img.long().unbind(1)
        return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).double()
    x = img.double() * 255
    if x.shape[1] == 1:
        return x[:, 0]
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def patch_stats_reference(img: torch.Tensor, patch: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`patch_stats` composed from stock PyTorch: grey, then box filters (avg_pool2d) of
    grey and grey^2 in float64. Returns float32 ``(mean, var)``, each ``(B, nh, nw)``."""
    grey = grey_reference(img).unsqueeze(1)
    mean = F.avg_pool2d(grey, patch, stride)
    mean_sq = F.avg_pool2d(grey * grey, patch, stride)
    var = (mean_sq - mean * mean).clamp_min(0)
    return mean[:, 0].float(), var[:, 0].float()
