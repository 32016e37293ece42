"""Pictures for the reports: a blur kernel and a noise patch made visible, and where to zoom in.

All take and return numpy arrays: images are `(H, W, 3)` uint8, kernels `(k, k)` floats.
"""
from __future__ import annotations

import numpy as np

NOISE_GAIN = 8
"""Noise patches are shown as 128 + NOISE_GAIN * (patch - its mean), to make the noise visible."""


def kernel_image(kernel: np.ndarray) -> np.ndarray:
    """A `(k, k)` kernel as `(k, k)` uint8 grey, its maximum white (negative values black)."""
    peak = kernel.max()
    return np.round(np.clip(kernel / peak if peak > 0 else kernel, 0, 1) * 255).astype(np.uint8)


def amplified_noise(patch: np.ndarray) -> np.ndarray:
    """`(P, P, 3)` uint8 patch -> 128 + NOISE_GAIN * (patch - per-channel mean), uint8."""
    pixels = patch.astype(np.float64)
    centred = pixels - pixels.mean(axis=(0, 1), keepdims=True)
    return np.round(np.clip(128 + NOISE_GAIN * centred, 0, 255)).astype(np.uint8)


def busiest_window(image: np.ndarray, side: int, step: int = 4) -> tuple[int, int]:
    """Top-left `(y, x)`, multiples of `step`, of the `side`-square window with the most gradient.

    `image` is `(H, W, 3)` uint8; the gradient is |dx| + |dy| of the channel mean.
    """
    grey = image.astype(np.float64).mean(axis=2)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys = np.arange(0, image.shape[0] - side + 1, step)
    xs = np.arange(0, image.shape[1] - side + 1, step)
    sums = (integral[ys[:, None] + side, xs[None, :] + side] - integral[ys[:, None], xs[None, :] + side]
            - integral[ys[:, None] + side, xs[None, :]] + integral[ys[:, None], xs[None, :]])
    row, col = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(ys[row]), int(xs[col])
