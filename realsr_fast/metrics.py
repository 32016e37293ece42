"""Image-quality metrics the way the SR literature reports them: PSNR, SSIM, LPIPS.

PSNR and SSIM follow the MATLAB-derived convention of BasicSR's `calculate_psnr` /
`calculate_ssim` (the numbers in the RealSR and NTIRE tables):

- pixels on the 0..255 scale (uint16 images are rescaled, float tensors multiplied by 255);
- `crop_border` pixels removed from each side (use the SR scale, e.g. 4);
- `y_channel=True`: the luma of ITU-R BT.601 as MATLAB's `rgb2ycbcr`,
  Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for R, G, B on 0..255, kept in float
  (MATLAB would round it to uint8 for uint8 input; BasicSR does not, nor do we);
  grey images use their grey level as it is;
- `y_channel=False`: the RGB variant; PSNR over all channels together, SSIM the mean over channels;
- SSIM: 11x11 Gaussian window (sigma 1.5, normalised), 'valid' filtering (no padding),
  K1 = 0.01, K2 = 0.03, data range 255, the mean of the SSIM map.

An alpha channel is ignored. Images are `(H, W, C)` uint8/uint16 numpy arrays as `realsr_fast.io`
reads them, or float tensors `(C, H, W)` / `(1, C, H, W)` in [0, 1].

LPIPS (AlexNet v0.1, the `lpips` package) needs torchvision's ImageNet AlexNet weights in the torch
hub cache. `fetch_lpips_weights()` downloads them on first use (hash-checked, see
`realsr_fast.download`; `realsr eval --lpips` calls it); `lpips_distance` itself never downloads:
without the weights it returns None and `lpips_unavailable_reason()` says why in one line.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import warnings
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from realsr_fast.download import ALEXNET, fetch_pretrained, hub_checkpoint_path
from realsr_fast.errors import RealSRError

Image = Union[np.ndarray, torch.Tensor]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 255.0
BT601_Y = (65.481, 128.553, 24.966)
"""Weights of R, G, B in [0, 1] for Y on the 16..235 scale (MATLAB's rgb2ycbcr)."""


def to_float255(image: Image) -> np.ndarray:
    """Any supported image -> `(H, W, C)` float64 on the 0..255 scale, alpha dropped (C = 1 or 3)."""
    if isinstance(image, torch.Tensor):
        x = image.detach()
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 3 or not x.is_floating_point():
            raise RealSRError(f"expected a float (C, H, W) or (1, C, H, W) tensor, got {x.dtype} {tuple(image.shape)}")
        pixels = x.to("cpu", torch.float64).permute(1, 2, 0).numpy() * DATA_RANGE
    elif isinstance(image, np.ndarray) and image.dtype in (np.uint8, np.uint16):
        if image.ndim != 3:
            raise RealSRError(f"expected an (H, W, C) image, got shape {image.shape}")
        pixels = image.astype(np.float64) * (DATA_RANGE / np.iinfo(image.dtype).max)
    else:
        raise RealSRError(f"expected a uint8/uint16 (H, W, C) array or a float tensor, got {type(image).__name__}")
    channels = pixels.shape[2]
    if channels not in (1, 2, 3, 4):
        raise RealSRError(f"expected 1 to 4 channels, got {channels}")
    return pixels[..., : 1 if channels <= 2 else 3]


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """`(H, W, 3)` RGB on 0..255 -> `(H, W, 1)` BT.601 luma on the 16..235 scale, float."""
    return 16.0 + rgb @ (np.asarray(BT601_Y) / DATA_RANGE)[:, None]


def _prepare(a: Image, b: Image, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both images as cropped `(H, W, C)` float64 0..255 arrays (C = 1 for Y or grey)."""
    x, y = to_float255(a), to_float255(b)
    if x.shape != y.shape:
        raise RealSRError(f"the images differ in size or channels: {x.shape} vs {y.shape}")
    if crop_border < 0:
        raise RealSRError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        x = x[crop_border:-crop_border, crop_border:-crop_border]
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    if x.size == 0:
        raise RealSRError(f"cropping {crop_border} pixels from each side leaves nothing of a {a.shape} image")
    if y_channel and x.shape[2] == 3:
        x, y = rgb_to_y(x), rgb_to_y(y)
    return x, y


def psnr(a: Image, b: Image, crop_border: int = 0, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (data range 255); inf for identical images."""
    x, y = _prepare(a, b, crop_border, y_channel)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


@functools.lru_cache(maxsize=1)
def _gaussian_window() -> torch.Tensor:
    """The normalised 1-D Gaussian, `(SSIM_WINDOW,)` float64 (the 2-D window is its outer product)."""
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    window = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return window / window.sum()


def _filter_valid(x: torch.Tensor) -> torch.Tensor:
    """Correlate `(C, 1, H, W)` with the 2-D Gaussian window, keeping only full windows."""
    window = _gaussian_window()
    x = F.conv2d(x, window.view(1, 1, -1, 1))
    return F.conv2d(x, window.view(1, 1, 1, -1))


def ssim(a: Image, b: Image, crop_border: int = 0, y_channel: bool = True) -> float:
    """Structural similarity (Wang et al. 2004), mean over the map and over channels."""
    x, y = _prepare(a, b, crop_border, y_channel)
    if min(x.shape[:2]) < SSIM_WINDOW:
        raise RealSRError(
            f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping, got {x.shape[1]}x{x.shape[0]}"
        )
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[:, None]
    y = torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1)))[:, None]
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    mu_x, mu_y = _filter_valid(x), _filter_valid(y)
    var_x = _filter_valid(x * x) - mu_x**2
    var_y = _filter_valid(y * y) - mu_y**2
    cov = _filter_valid(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean(dim=(1, 2, 3)).mean())


_NO_PACKAGE = "the `lpips` package is not installed (pip install lpips torchvision)"


def lpips_unavailable_reason() -> str | None:
    """None when LPIPS can run without downloading anything, else one line saying why and what to do."""
    if importlib.util.find_spec("lpips") is None or importlib.util.find_spec("torchvision") is None:
        return f"LPIPS skipped: {_NO_PACKAGE}"
    weights = hub_checkpoint_path(ALEXNET)
    if not weights.is_file():
        return (f"LPIPS skipped: {ALEXNET.what} are not at {weights}; `realsr eval --lpips` downloads "
                f"them, or copy {ALEXNET.name} there")
    return None


def fetch_lpips_weights() -> None:
    """Make LPIPS ready: download the AlexNet weights into the hub cache if they are missing.

    Raises:
        RealSRError: the `lpips` package is missing, or the download is forbidden or failed.
    """
    if importlib.util.find_spec("lpips") is None or importlib.util.find_spec("torchvision") is None:
        raise RealSRError(f"LPIPS needs {_NO_PACKAGE}")
    fetch_pretrained(ALEXNET)


@functools.lru_cache(maxsize=None)
def _lpips_network(device: str) -> torch.nn.Module:
    import lpips

    with warnings.catch_warnings():  # lpips still calls torchvision's deprecated `pretrained=True`
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net="alex", verbose=False).eval().to(device)


def lpips_distance(a: Image, b: Image, crop_border: int = 0, device: str | None = None) -> float | None:
    """LPIPS (AlexNet, v0.1) between two images; lower is closer. None when unavailable.

    Args:
        a, b: images as for `psnr`; grey is repeated to RGB.
        crop_border: pixels removed from each side first.
        device: torch device; CUDA when available if None.
    """
    if lpips_unavailable_reason() is not None:
        return None
    x, y = _prepare(a, b, crop_border, y_channel=False)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tensors = [
        torch.from_numpy(v.transpose(2, 0, 1).copy()).float().expand(3, -1, -1)[None].to(device) / 127.5 - 1
        for v in (x, y)
    ]
    with torch.no_grad():
        return float(_lpips_network(device)(*tensors))
