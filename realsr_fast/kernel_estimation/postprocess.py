"""The official KernelGAN post-processing of G's kernel, and the analytic x4 kernel.

As sefibk/KernelGAN util.py (`post_process_k`, `zeroize_negligible_val`, `kernel_shift`,
`analytic_kernel`):

1. values below 0.75 x the 41st largest are dropped (k - threshold, clipped at 0), sum set to 1;
2. the centre of mass is moved (cubic-spline shift, zero outside) to shape//2 + 0.5 * (s - shape % 2),
   i.e. 6.5 for 13x13 at x2, so output pixel 0 sits at the centre of the first 2x2 block; the
   kernel is zero-padded by ceil(max |shift|) + 1 first, which gives 17x17 when the shift is under
   one pixel. A larger shift gives a larger array; we cut it back to 17x17 around its centre (and
   renormalise) so every saved x2 kernel has one size, and report the mass that was cut;
3. x4 = the x2 kernel convolved with itself dilated by 2, cropped by 17//2 = 8 on each side
   (33x33, centre of mass 17.5), normalised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

N_FILTERING = 40
X2_SIZE = 17


@dataclass
class PostProcessed:
    """A post-processed x2 kernel and how far it had to be moved."""

    kernel: np.ndarray
    """`(17, 17)` float64, sum 1 (up to the spline's rounding)."""
    shift: tuple[float, float]
    """(rows, cols) shift applied to centre the raw kernel's mass."""
    cut_mass: float
    """Mass outside the 17x17 window that had to be cut (0 unless the shift exceeded one pixel)."""


def zeroize_negligible(k: np.ndarray, n: int = N_FILTERING) -> np.ndarray:
    """Subtract 0.75 x the (n+1)-th largest value, clip at 0, normalise to sum 1."""
    threshold = 0.75 * np.sort(k.ravel())[-n - 1]
    filtered = np.clip(k - threshold, 0, 100)
    return filtered / filtered.sum()


def wanted_centre(size: int, scale: int = 2) -> float:
    """Where KernelGAN puts the centre of mass of a `size` x `size` kernel for factor `scale`."""
    return size // 2 + 0.5 * (scale - size % 2)


def shift_to_centre(k: np.ndarray, scale: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The official `kernel_shift`: pad by ceil(max |shift|) + 1, then spline-shift. Returns (kernel, shift)."""
    current = np.array(ndimage.center_of_mass(k))
    shift = np.array([wanted_centre(n, scale) for n in k.shape]) - current
    padded = np.pad(k, int(math.ceil(np.max(np.abs(shift)))) + 1, mode="constant")
    return ndimage.shift(padded, shift), shift


def post_process(raw: np.ndarray) -> PostProcessed:
    """G's `(13, 13)` kernel -> the saved `(17, 17)` x2 kernel, as the official `post_process_k`.

    Step 1 keeps about 40 taps, which cuts a wide kernel's tails and narrows it (its cost on true
    DIV2KRK kernels: docs/kernel_prior.md).
    """
    raw = np.asarray(raw, dtype=np.float64)
    shifted, shift = shift_to_centre(zeroize_negligible(raw))
    cut_mass = 0.0
    extra = (shifted.shape[0] - X2_SIZE) // 2
    if extra > 0:
        window = shifted[extra : extra + X2_SIZE, extra : extra + X2_SIZE]
        cut_mass = float(np.abs(shifted).sum() - np.abs(window).sum())
        shifted = window / window.sum()
    return PostProcessed(kernel=shifted, shift=(float(shift[0]), float(shift[1])), cut_mass=cut_mass)


def analytic_x4(k2: np.ndarray, k2_first: np.ndarray | None = None) -> np.ndarray:
    """The x4 kernel of two x2 steps, as the official `analytic_kernel`.

    Args:
        k2: `(k, k)` x2 kernel of the second step (dilated by 2), e.g. `(17, 17)`.
        k2_first: `(k, k)` x2 kernel of the first step; `k2` itself when None (the official case).

    Returns:
        `(2k - 1, 2k - 1)` kernel (33x33 for k = 17), sum 1.
    """
    first = k2 if k2_first is None else k2_first
    size = k2.shape[0]
    big = np.zeros((3 * size - 2, 3 * size - 2))
    for r in range(size):
        for c in range(size):
            big[2 * r : 2 * r + size, 2 * c : 2 * c + size] += k2[r, c] * first
    crop = size // 2
    cropped = big[crop:-crop, crop:-crop]
    return cropped / cropped.sum()
