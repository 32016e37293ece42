"""DIV2KRK-style synthetic blur kernels: random anisotropic Gaussians with multiplicative noise.

As the KernelGAN paper's DIV2KRK recipe: covariance eigenvalues uniform in [0.6, 5], a random
angle, each tap multiplied by (1 + U(-0.25, 0.25)), 11x11 for x2. The mean sits where KernelGAN
puts a kernel's centre of mass (size//2 + 0.5 * (scale - size % 2), 5.5 for 11x11 at x2), so the
truth and the estimates share one alignment: output pixel i centred on input s*i + (s-1)/2.
x4 kernels are the analytic combination of two such x2 kernels.
"""
from __future__ import annotations

import numpy as np

from realsr_fast.kernel_estimation.postprocess import X2_SIZE as GRID_SIZE
from realsr_fast.kernel_estimation.postprocess import analytic_x4, wanted_centre

MIN_VARIANCE = 0.6
MAX_VARIANCE = 5.0
NOISE_LEVEL = 0.25
X2_SIZE = 11
TYPICAL_SIGMA = float(np.sqrt((MIN_VARIANCE + MAX_VARIANCE) / 2))
"""The family's median width (px, x2): the square root of the median variance of the uniform draw above,
sqrt(2.8); where an estimate is shrunk towards the family, it is shrunk towards this width."""
BEST_CONSTANT_SIGMA = 1.75
"""The best constant's width (px, x2) on the kernel yardstick's benchmark set (the first 8 cases of seed 2020,
`evaluation.yardstick.best_constant_sigma`, docs/kernel_prior.md): the typical width of the DIV2KRK family on
real photos, used where an image-agnostic width is wanted."""


def covariance(sigma_major: float, sigma_minor: float, angle: float) -> np.ndarray:
    """`(2, 2)` covariance (px^2, (row, col) axes) of a Gaussian with these standard deviations,
    its major axis at `angle` radians from the row axis towards the column axis."""
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return rotation @ np.diag([sigma_major**2, sigma_minor**2]) @ rotation.T


def gaussian_kernel(cov: np.ndarray, size: int, scale: int = 2) -> np.ndarray:
    """`(size, size)` float64 Gaussian of covariance `cov` `(2, 2)`, centred for factor `scale`, sum 1."""
    inverse = np.linalg.inv(cov)
    offsets = np.arange(size) - wanted_centre(size, scale)
    d = np.stack(np.meshgrid(offsets, offsets, indexing="ij"), axis=-1)  # (size, size, 2) as (row, col)
    kernel = np.exp(-0.5 * np.einsum("...i,ij,...j->...", d, inverse, d))
    return kernel / kernel.sum()


def isotropic_gaussian(sigma: float, size: int = GRID_SIZE) -> np.ndarray:
    """`(size, size)` isotropic Gaussian with standard deviation `sigma` px, x2-aligned, sum 1 (17x17 by default)."""
    return gaussian_kernel(np.eye(2) * sigma**2, size)


def anisotropic_gaussian(rng: np.random.Generator, size: int = X2_SIZE, scale: int = 2) -> np.ndarray:
    """One random `(size, size)` x2 kernel, float64, sum 1."""
    lambdas = rng.uniform(MIN_VARIANCE, MAX_VARIANCE, size=2)
    theta = rng.uniform(0, np.pi)
    noise = rng.uniform(-NOISE_LEVEL, NOISE_LEVEL, size=(size, size))
    kernel = gaussian_kernel(covariance(*np.sqrt(lambdas), theta), size, scale) * (1 + noise)
    return kernel / kernel.sum()


def x4_kernel(rng: np.random.Generator, size: int = X2_SIZE) -> np.ndarray:
    """One random x4 kernel `(2 size - 1, 2 size - 1)`: two independent x2 kernels combined analytically."""
    first = anisotropic_gaussian(rng, size)
    second = anisotropic_gaussian(rng, size)
    return analytic_x4(second, first)
