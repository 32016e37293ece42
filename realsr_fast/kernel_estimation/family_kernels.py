"""The blur families of `families` (`realsr kernels --method families`): their transfer functions and kernels.

- `gaussian`: anisotropic Gaussian, widths s1 >= s2 and an angle: exp(-2 pi^2 f'Sf);
- `disk` (defocus): a uniform disk of radius r, pixel-antialiased (its coverage of each pixel), then a
  Gaussian of width g;
- `motion` (linear camera shake): a segment of length L at an angle, pixel-antialiased, then a Gaussian of width g.

Sizes in HR px, angles in radians from the row axis towards the column axis (docs/kernel_prior.md, "Kernel families").
"""
from __future__ import annotations

import math

import numpy as np
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.kernel_estimation.gaussians import covariance
from realsr_fast.kernel_estimation.postprocess import X2_SIZE, wanted_centre
from realsr_fast.kernel_estimation.spectral import SCALE

FAMILIES = ("gaussian", "disk", "motion")


class _BesselJ1(torch.autograd.Function):
    """J1 with its derivative J0(x) - J1(x) / x (torch.special.bessel_j1 has no autograd)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.special.bessel_j1(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        safe = torch.where(x.abs() < 1e-6, torch.ones_like(x), x)
        derivative = torch.where(x.abs() < 1e-6, torch.full_like(x, 0.5),
                                 torch.special.bessel_j0(x) - torch.special.bessel_j1(safe) / safe)
        return grad * derivative


def jinc(x: torch.Tensor) -> torch.Tensor:
    """2 J1(x) / x, 1 at 0: the transfer of a unit-area disk at x = 2 pi r |f|."""
    safe = torch.where(x.abs() < 1e-6, torch.ones_like(x), x)
    return torch.where(x.abs() < 1e-6, torch.ones_like(x), 2 * _BesselJ1.apply(safe) / safe)


def transfer_power(family: str, params: list[torch.Tensor], f_row: torch.Tensor, f_col: torch.Tensor) -> torch.Tensor:
    """|K(f)|^2 of the family at HR frequencies (cycles/px), parameters in px and radians."""
    if family == "gaussian":
        major, minor, angle = params
        cos, sin = angle.cos(), angle.sin()
        s_rr = cos * cos * major**2 + sin * sin * minor**2
        s_rc = cos * sin * (major**2 - minor**2)
        s_cc = sin * sin * major**2 + cos * cos * minor**2
        return torch.exp(-4 * math.pi**2 * (s_rr * f_row * f_row + 2 * s_rc * f_row * f_col + s_cc * f_col * f_col))
    box = (torch.sinc(f_row) * torch.sinc(f_col)).square()
    radius2 = f_row.square() + f_col.square()
    if family == "disk":
        radius, smooth = params
        shape = jinc(2 * math.pi * radius * radius2.sqrt()).square()
    elif family == "motion":
        length, angle, smooth = params
        shape = torch.sinc(length * (angle.cos() * f_row + angle.sin() * f_col)).square()
    else:
        raise RealSRError(f"unknown kernel family {family!r}; choose one of {', '.join(FAMILIES)}")
    return shape * box * torch.exp(-4 * math.pi**2 * smooth**2 * radius2)


def render_kernel(family: str, params: tuple[float, ...], size: int = X2_SIZE, supersample: int = 8) -> np.ndarray:
    """`(size, size)` float64 x2 kernel of a family member, sum 1, centred at `wanted_centre(size)`.

    Disk and segment are pixel-antialiased (their coverage of each pixel, on a `supersample` finer grid),
    then blurred by the smoothing Gaussian.
    """
    centre = wanted_centre(size, SCALE)
    offsets = np.arange(size) - centre
    if family == "gaussian":
        major, minor, angle = params
        inverse = np.linalg.inv(covariance(max(major, 1e-3), max(minor, 1e-3), angle))
        d = np.stack(np.meshgrid(offsets, offsets, indexing="ij"), axis=-1)
        kernel = np.exp(-0.5 * np.einsum("...i,ij,...j->...", d, inverse, d))
        return kernel / kernel.sum()
    fine = (np.arange(size * supersample) + 0.5) / supersample - 0.5 - centre
    fr, fc = np.meshgrid(fine, fine, indexing="ij")
    if family == "disk":
        radius, smooth = params
        shape = (fr**2 + fc**2 <= radius**2).astype(np.float64)
        if shape.sum() == 0:
            shape[np.unravel_index(np.argmin(fr**2 + fc**2), shape.shape)] = 1
    elif family == "motion":
        length, angle, smooth = params
        steps = max(2, int(math.ceil(length * supersample * 2)) + 1)
        t = np.linspace(-length / 2, length / 2, steps)
        rows = np.round((centre + t * math.cos(angle) + 0.5) * supersample - 0.5).astype(int)
        cols = np.round((centre + t * math.sin(angle) + 0.5) * supersample - 0.5).astype(int)
        keep = (rows >= 0) & (rows < size * supersample) & (cols >= 0) & (cols < size * supersample)
        shape = np.zeros_like(fr)
        np.add.at(shape, (rows[keep], cols[keep]), 1.0)
    else:
        raise RealSRError(f"unknown kernel family {family!r}; choose one of {', '.join(FAMILIES)}")
    kernel = shape.reshape(size, supersample, size, supersample).sum(axis=(1, 3))
    if smooth > 0.05:
        half = size // 2
        g = np.exp(-0.5 * (np.arange(-half, half + 1) / smooth) ** 2)
        g /= g.sum()
        kernel = np.apply_along_axis(lambda v: np.convolve(v, g, mode="same"), 0, kernel)
        kernel = np.apply_along_axis(lambda v: np.convolve(v, g, mode="same"), 1, kernel)
    return kernel / kernel.sum()
