"""Where KernelGAN crops: gradient-weighted probability maps and per-iteration crop corners.

As the official `DataGenerator` (sefibk/KernelGAN data.py, util.py): the image loses a 10 px
border and is cut to even size; a gradient map of it (and of its bicubic half, enlarged back by
nearest neighbour) is box-blurred into probabilities of crop centres, so crops land on edges.
For every iteration one centre is drawn for G's 64x64 crop and one for D's 26x26 crop; the
top-left corner is the centre minus half the size, kept inside the image and made even.
"""
from __future__ import annotations

import numpy as np
import torch

from realsr_fast.data.imresize import imresize
from realsr_fast.errors import RealSRError

G_CROP = 64
D_CROP = 26
BORDER_SHAVE = 10
GRADIENT_WINDOW = 5
GRADIENT_PERCENTILE = 0.97
MIN_IMAGE_SIDE = G_CROP + 2 * BORDER_SHAVE
"""84: the smallest height and width that leave room for one 64x64 crop after the shave."""


def prepare_image(image: np.ndarray) -> np.ndarray:
    """`(H, W, C)` uint8/uint16 (C in 1..4) -> `(H', W', 3)` float64 in [0, 1], shaved and even-sized.

    Grey is repeated to RGB and alpha dropped (the official code reads with PIL `convert('RGB')`).
    Raises RealSRError when the image is smaller than `MIN_IMAGE_SIDE` on either side.
    """
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise RealSRError(
            f"image is {width}x{height} pixels; KernelGAN needs at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} "
            f"({G_CROP} px crops after shaving a {BORDER_SHAVE} px border)"
        )
    rgb = image[..., :3] if image.shape[2] >= 3 else np.repeat(image[..., :1], 3, axis=2)
    pixels = rgb.astype(np.float64) / np.iinfo(image.dtype).max
    pixels = pixels[BORDER_SHAVE:-BORDER_SHAVE, BORDER_SHAVE:-BORDER_SHAVE]
    return pixels[: pixels.shape[0] // 2 * 2, : pixels.shape[1] // 2 * 2]


def _zero_border(im: np.ndarray, edge: int) -> np.ndarray:
    """The official `pad_edges`: a copy with an `edge`-wide border set to 0."""
    out = np.zeros_like(im)
    out[edge:-edge, edge:-edge] = im[edge:-edge, edge:-edge]
    return out


def _clip_extreme(im: np.ndarray, percent: float) -> np.ndarray:
    """The official `clip_extreme`: clip to [v, next sorted value] at the `percent` quantile, minus v."""
    ordered = np.sort(im.ravel())
    pivot = int(percent * len(ordered))
    v_min = ordered[pivot]
    v_max = ordered[pivot + 1] if ordered[pivot + 1] > v_min else v_min + 10e-6
    return np.clip(im, v_min, v_max) - v_min


def box_sum_same(im: np.ndarray, size: int) -> np.ndarray:
    """`scipy.signal.convolve2d(im, ones((size, size)), 'same')` for non-negative `im`, by cumulative sums.

    'same' keeps the window im[i - size + 1 + (size - 1)//2 .. i + (size - 1)//2]. Summing one
    axis at a time keeps every partial sum non-negative, so no probability comes out below 0.
    """
    out = im
    for axis in (0, 1):
        n = out.shape[axis]
        padded = np.concatenate([np.zeros_like(out.take([0], axis=axis)), np.cumsum(out, axis=axis)], axis=axis)
        stop = np.clip(np.arange(n) + (size - 1) // 2 + 1, 0, n)
        start = np.clip(np.arange(n) + (size - 1) // 2 + 1 - size, 0, n)
        out = np.maximum(padded.take(stop, axis=axis) - padded.take(start, axis=axis), 0.0)
    return out


def _normalised(part: np.ndarray) -> np.ndarray:
    total = part.sum()
    return part / total if total > 0 else np.zeros_like(part)  # a flat image has no edges at all


def gradient_map(im: np.ndarray) -> np.ndarray:
    """The official `create_gradient_map(im, window=5, percent=.97)`: `(H, W, 3)` -> `(H, W)`, mean 1.

    Sums of |d/dy|, |d/dx| (each clipped at its 97th percentile) and the gradient magnitude (as
    the official code: not clipped), each normalised to sum 1, box-blurred 5x5.
    """
    grey = im @ np.array([0.299, 0.587, 0.114])
    gy, gx = np.gradient(grey)
    gmag = _zero_border(np.sqrt(gx**2 + gy**2), GRADIENT_WINDOW)
    lm_y = _clip_extreme(_zero_border(np.abs(gy), GRADIENT_WINDOW), GRADIENT_PERCENTILE)
    lm_x = _clip_extreme(_zero_border(np.abs(gx), GRADIENT_WINDOW), GRADIENT_PERCENTILE)
    combined = _normalised(lm_y) + _normalised(lm_x) + _normalised(gmag)
    loss_map = box_sum_same(combined, GRADIENT_WINDOW) / GRADIENT_WINDOW**2
    mean = loss_map.mean()
    return loss_map / mean if mean > 0 else loss_map


def probability_map(loss_map: np.ndarray, crop: int) -> np.ndarray:
    """The official `create_probability_map`: flat `(H * W,)` probabilities of crop centres."""
    half = crop // 2
    blurred = box_sum_same(loss_map, half) / half**2
    prob = _zero_border(blurred, half).ravel()
    total = prob.sum()
    return prob / total if total > 0 else np.full(prob.shape, 1.0 / prob.size)


def _corners(centres: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """Flat centre indices `(T,)` -> even top-left corners `(T, 2)` of `size` crops inside `shape`."""
    rows, cols = shape
    row, col = centres // cols, centres % cols
    top = np.minimum(np.maximum(0, row - size // 2), rows - size)
    left = np.minimum(np.maximum(0, col - size // 2), cols - size)
    return np.stack([top - top % 2, left - left % 2], axis=1)


def crop_corners(im: np.ndarray, iterations: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners of G's and D's crops for every iteration, drawn as the official code.

    Args:
        im: `prepare_image` output `(H, W, 3)`.
        iterations: number of training iterations T.
        rng: this image's generator (G's centres are drawn first, then D's).

    Returns:
        `(g_corners, d_corners)`, each `(T, 2)` int64 (top, left).
    """
    small = imresize(torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))), 0.5)
    small_map = gradient_map(small.numpy().transpose(1, 2, 0))
    prob_g = probability_map(small_map.repeat(2, axis=0).repeat(2, axis=1), G_CROP)
    prob_d = probability_map(gradient_map(im), D_CROP)
    centres_g = rng.choice(prob_g.size, size=iterations, p=prob_g)
    centres_d = rng.choice(prob_d.size, size=iterations, p=prob_d)
    shape = im.shape[:2]
    return _corners(centres_g, shape, G_CROP), _corners(centres_d, shape, D_CROP)
