"""A per-kernel quality report and flags for kernels that should not be trusted.

Measures (on the x2 kernel): sum; distance of the centre of mass from where it belongs; how far
G's raw kernel had to be moved; the Gaussian widths (square roots of the eigenvalues of the
mass's covariance) and their ratio; the radius holding 95% of the mass; the mass on the outer
2-pixel ring; the number of separate regions above a quarter of the peak. Flags:

- "off-centre": G's kernel was more than 1 px from its place (KernelGAN issues #34, #40, #48);
- "too wide": 95% radius above 6 px, or over 5% of the mass on the outer ring of the window;
- "multi-modal": more than one separate region above 25% of the maximum;
- "bad sum": sum more than 1% away from 1;
- "not converged": training never left the bicubic warm-up (the constraints never switched on).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from realsr_fast.kernel_estimation.postprocess import wanted_centre

OFF_CENTRE_PX = 1.0
MAX_RADIUS_95_PX = 6.0
MAX_EDGE_MASS = 0.05
PEAK_FRACTION = 0.25
SUM_TOLERANCE = 0.01


def _moments(k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre of mass (2,), covariance (2, 2) and pixel offsets from the centre (H, W, 2) of k's positive part."""
    mass = np.clip(k, 0, None)
    mass = mass / mass.sum()
    grid = np.stack(np.meshgrid(np.arange(k.shape[0]), np.arange(k.shape[1]), indexing="ij"), axis=-1).astype(float)
    centre = np.einsum("hw,hwi->i", mass, grid)
    d = grid - centre
    return centre, np.einsum("hw,hwi,hwj->ij", mass, d, d), d


def kernel_report(k2: np.ndarray, shift: tuple[float, float], constrained: bool, scale: int = 2) -> dict:
    """Report on a post-processed `(17, 17)` x2 kernel.

    Args:
        k2: the saved x2 kernel.
        shift: the (rows, cols) shift post-processing applied to G's kernel.
        constrained: whether training reached the constrained phase.
        scale: the scale the kernel is for (the centre is checked for x2 geometry either way).

    Returns:
        JSON-ready dict of measures and `flags` (list of strings, empty when all is well).
    """
    centre, covariance, d = _moments(k2)
    eigen = np.sqrt(np.clip(np.linalg.eigvalsh(covariance), 1e-12, None))
    mass = np.clip(k2, 0, None) / np.clip(k2, 0, None).sum()
    radius = np.hypot(d[..., 0], d[..., 1]).ravel()
    order = np.argsort(radius)
    radius_95 = float(radius[order][np.searchsorted(np.cumsum(mass.ravel()[order]), 0.95)])
    ring = np.ones_like(mass, dtype=bool)
    ring[2:-2, 2:-2] = False
    edge_mass = float(mass[ring].sum())
    n_peaks = int(ndimage.label(k2 > PEAK_FRACTION * k2.max(), structure=np.ones((3, 3)))[1])
    total = float(k2.sum())
    shift_px = float(np.hypot(*shift))
    flags = []
    if shift_px > OFF_CENTRE_PX:
        flags.append("off-centre")
    if radius_95 > MAX_RADIUS_95_PX or edge_mass > MAX_EDGE_MASS:
        flags.append("too wide")
    if n_peaks > 1:
        flags.append("multi-modal")
    if abs(total - 1) > SUM_TOLERANCE:
        flags.append("bad sum")
    if not constrained:
        flags.append("not converged")
    want = wanted_centre(k2.shape[0], 2)
    return {
        "scale": scale,
        "sum": total,
        "centre_offset_px": float(np.hypot(centre[0] - want, centre[1] - want)),
        "raw_shift_px": shift_px,
        "sigma_major_px": float(eigen[1]),
        "sigma_minor_px": float(eigen[0]),
        "anisotropy": float(eigen[1] / eigen[0]),
        "radius_95_px": radius_95,
        "edge_mass": edge_mass,
        "peaks": n_peaks,
        "flags": flags,
    }


def kernel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """L1 distance between two kernels of the same shape (0 = equal, 2 = disjoint)."""
    return float(np.abs(a - b).sum())


def most_consistent(kernels: list[np.ndarray]) -> tuple[int, float]:
    """Index of the medoid of several estimates of one kernel, and their spread.

    The medoid has the smallest summed L1 distance to the others; the spread is the mean
    pairwise L1 distance (0 when all runs agree).
    """
    count = len(kernels)
    if count == 1:
        return 0, 0.0
    distances = np.array([[kernel_distance(a, b) for b in kernels] for a in kernels])
    return int(distances.sum(axis=1).argmin()), float(distances.sum() / (count * (count - 1)))
