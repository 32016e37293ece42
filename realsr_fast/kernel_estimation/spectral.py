"""Blind Gaussian blur estimation by spectral maximum likelihood (`realsr kernels --method spectral`).

The model (docs/kernel_prior.md, "The spectral estimator"): the LR photo is a clean image blurred
by a Gaussian of covariance S (HR px^2), sub-sampled x2, plus white noise; the clean image is
a stationary field with the power law spectrum of natural images, c |f|^-alpha (Field 1987; van
der Schaaf & van Hateren 1996). The LR's power spectrum at LR frequency u (cycles/px) is then

    E|Y(u)|^2 = sum_a c |f_a|^-alpha exp(-4 pi^2 f_a' S f_a) + eta^2,   f_a = (u + a) / 2

over the 4 aliases a (HR frequencies wrapped into [-1/2, 1/2)). The photo's Welch periodogram P
(Hann-windowed square tiles, half overlap, grey; summed a chunk of tiles at a time, so that memory
does not grow with the photo's size) is fitted to it by the Whittle likelihood,
-log L = sum_u P(u) / E|Y(u)|^2 + log E|Y(u)|^2, over (S, c, alpha, eta^2) with L-BFGS from
several starts. The blur shows as the Gaussian roll-off that bends the power law, in each
direction, so neither the photo's contrast nor its spectral slope is taken for blur.

The fitted widths are then shrunk towards the family's typical width in log space (a posterior
mean: weight e^2 / (e^2 + p^2) on the typical width, with e the estimator's measured error and p the
family's spread), since a photo's own softness adds to the blur it shows.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.kernel_estimation.confidence import TRUSTED_DB, agreement_trust, kernel_agreement_db
from realsr_fast.kernel_estimation.estimators import KernelEstimate, KernelSettings, Trust
from realsr_fast.kernel_estimation.gaussians import TYPICAL_SIGMA, covariance, gaussian_kernel
from realsr_fast.kernel_estimation.postprocess import X2_SIZE
from realsr_fast.kernel_estimation.quality import kernel_report

SCALE = 2
"""The estimate is the x2 kernel (x4 is derived from it, as for KernelGAN)."""
TILE = 64
"""Periodogram tile side (LR px); images under 2 tiles on a side use `SMALL_TILE`."""
SMALL_TILE = 32
CHUNK_TILES = 256
"""Tiles whose periodograms are made at once (`welch_periodograms`): the Welch averages are sums over
chunks of at most this many tiles, so their working memory is about CHUNK_TILES * tile^2 * 48 bytes
(float64 tiles, their complex128 transforms, the squares; 48 MiB for 64 px tiles) whatever the photo's
size, where all of a 24 MP photo's tiles at once took several GB."""
LOWEST_FREQUENCY = 1.5
"""Frequencies below this many cycles per tile are left out (the window's leakage and the DC term)."""
ERROR_LOG_SD = 0.25
"""Standard deviation of log(estimated / true width) before shrinking, on the development set's Gaussian
cases only (`benchmarks/spectral_constants.py`, docs/evaluation.md)."""
FAMILY_LOG_SD = 0.28
"""Standard deviation of the log width in the DIV2KRK family (variances uniform in [0.6, 5])."""
SHRINK = ERROR_LOG_SD**2 / (ERROR_LOG_SD**2 + FAMILY_LOG_SD**2)
"""Weight of the family's typical width in the shrunk log width."""
FLAT_STD = 1e-3
"""Grey standard deviation (of [0, 1]) under which a photo is flat: a quarter of an 8-bit level."""
MIN_SIGMA, MAX_SIGMA = 0.3, 4.0
"""Range (HR px) the fitted widths are clipped to: narrower is a delta, wider leaves the 17x17 window."""
WIDTH_BOUNDS = (0.1, 8.0)
"""Range (HR px) of the widths during the fit."""
SLOPE_BOUNDS = (0.1, 3.5)
"""Range of alpha during the fit. Clean natural images have alpha near 2 (Field 1987; van der Schaaf and
van Hateren 1996); a steeper fall is blur. Without the cap, noise let the fit trade the blur's roll-off
for a steep power law (widths -> 0); the cap and the spectrum-first starts of `fit_blur` stop that
(measured on 16 yardstick cases with noise: docs/kernel_prior.md, "The spectral estimator")."""
STARTS = [(s1, s2, angle) for s1, s2 in ((0.8, 0.8), (1.3, 1.3), (2.0, 2.0), (1.3, 0.8), (2.0, 0.8), (2.0, 1.3))
           for angle in ((0.0,) if s1 == s2 else (0.0, 0.8, 1.6, 2.4))]
"""L-BFGS starts (sigma_major, sigma_minor, angle): the likelihood has local optima in the angle."""
HALVES = "the spectral fits to its two halves"
"""What the trust compares (`SpectralEstimate.half_agreement_db`)."""


@dataclass
class BlurFit:
    """A fitted Gaussian blur (HR px) and the fitted image spectrum slope."""

    sigma_major: float
    sigma_minor: float
    angle: float
    """Major axis direction, radians from the row axis towards the column axis, in [0, pi)."""
    slope: float
    """alpha of the clean image's power law |f|^-alpha."""

    def kernel(self, size: int = X2_SIZE) -> np.ndarray:
        """`(size, size)` float64 x2 kernel, sum 1, centred as KernelGAN's."""
        return gaussian_kernel(covariance(self.sigma_major, self.sigma_minor, self.angle), size, SCALE)


def tile_periodograms(grey: torch.Tensor, tile: int) -> torch.Tensor:
    """Periodograms `(R, C, tile, tile)` of the half-overlapping Hann-windowed tiles of `grey` `(H, W)`.

    Each tile loses its mean; `|FFT|^2 / sum(window^2)`, so white noise of variance v gives v.
    """
    line = torch.hann_window(tile, periodic=False, dtype=torch.float64)
    window = line[:, None] * line[None]
    tiles = grey.unfold(0, tile, tile // 2).unfold(1, tile, tile // 2)
    tiles = tiles - tiles.mean(dim=(2, 3), keepdim=True)
    return torch.fft.fft2(tiles * window).abs().square() / window.square().sum()


@dataclass
class WelchPeriodograms:
    """Mean tile periodograms `(tile, tile)` float64 of a photo (see `welch_periodograms`)."""

    all: torch.Tensor
    """Over every tile."""
    halves: tuple[torch.Tensor, torch.Tensor]
    """Over each half of the tiles: a checkerboard of 2x2 tile blocks (tile row r, column c is in the
    first half when (r // 2 + c // 2) is even), so that each half covers the whole photo."""


def welch_periodograms(grey: torch.Tensor, tile: int, chunk_tiles: int | None = None) -> WelchPeriodograms:
    """The means of `tile_periodograms(grey, tile)` `(R, C, tile, tile)` over all tiles and over each half,
    summed over blocks of at most `chunk_tiles` tiles (default `CHUNK_TILES`) instead of holding them all.

    Args:
        grey: `(H, W)` float64 image, H and W at least `tile`.
        tile: tile side (even).
        chunk_tiles: most tiles made at once (at least 1).

    Returns:
        The means, equal to those of the tiles held at once up to float64 rounding (the summation order).
    """
    chunk_tiles = CHUNK_TILES if chunk_tiles is None else chunk_tiles
    if chunk_tiles < 1:
        raise RealSRError(f"the periodogram chunk must hold at least 1 tile, got {chunk_tiles}")
    step = tile // 2
    rows, cols = (grey.shape[0] - tile) // step + 1, (grey.shape[1] - tile) // step + 1
    block_cols = min(cols, chunk_tiles)
    block_rows = max(1, chunk_tiles // block_cols)
    sums = torch.zeros(2, tile, tile, dtype=torch.float64)
    counts = [0, 0]
    for top in range(0, rows, block_rows):
        bottom = min(rows, top + block_rows)
        for left in range(0, cols, block_cols):
            right = min(cols, left + block_cols)
            part = tile_periodograms(grey[top * step:(bottom - 1) * step + tile, left * step:(right - 1) * step + tile],
                                     tile)
            first = (torch.arange(top, bottom)[:, None] // 2 + torch.arange(left, right)[None] // 2) % 2 == 0
            for half, mask in enumerate((first, ~first)):
                sums[half] += part[mask].sum(0)
                counts[half] += int(mask.sum())
    return WelchPeriodograms(sums.sum(0) / sum(counts), (sums[0] / counts[0], sums[1] / counts[1]))


def _negative_log_likelihood(periodogram: torch.Tensor):
    """The Whittle objective of a `(T, T)` periodogram as a function of the parameter vector.

    Parameters: sigma_major, sigma_minor and alpha as `_bounded` maps them from the real line,
    angle, log c, log eta^2.
    """
    tile = periodogram.shape[0]
    u = torch.fft.fftfreq(tile, dtype=torch.float64)
    u_row, u_col = torch.meshgrid(u, u, indexing="ij")
    used = u_row.square().add(u_col.square()).sqrt() >= LOWEST_FREQUENCY / tile
    f_row = torch.stack([((u_row[used] + a) / SCALE + 0.5) % 1 - 0.5 for a in range(SCALE) for _ in range(SCALE)])
    f_col = torch.stack([((u_col[used] + b) / SCALE + 0.5) % 1 - 0.5 for _ in range(SCALE) for b in range(SCALE)])
    log_radius2 = (f_row.square() + f_col.square() + (0.25 / tile) ** 2).log()  # floor: no |f| = 0 alias
    observed = periodogram[used]

    def objective(p: torch.Tensor) -> torch.Tensor:
        major, minor, angle = _bounded(p[0], *WIDTH_BOUNDS), _bounded(p[1], *WIDTH_BOUNDS), p[2]
        cos, sin = angle.cos(), angle.sin()
        s_rr = cos * cos * major**2 + sin * sin * minor**2
        s_rc = cos * sin * (major**2 - minor**2)
        s_cc = sin * sin * major**2 + cos * cos * minor**2
        quadratic = s_rr * f_row * f_row + 2 * s_rc * f_row * f_col + s_cc * f_col * f_col
        clean = torch.exp(p[3] - 0.5 * _bounded(p[4], *SLOPE_BOUNDS) * log_radius2)
        expected = (clean * torch.exp(-4 * math.pi**2 * quadratic)).sum(0) + p[5].exp()
        return (observed / expected + expected.log()).mean()

    return objective, observed


def _bounded(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """The real line onto (low, high), geometrically: the fit cannot run off to a degenerate 0 or infinity."""
    return low * (high / low) ** torch.sigmoid(raw)


def _unbounded(value: float, low: float, high: float) -> float:
    """The inverse of `_bounded` (value clipped inside the bounds)."""
    t = float(np.clip(math.log(value / low) / math.log(high / low), 1e-6, 1 - 1e-6))
    return math.log(t / (1 - t))


def _minimise(loss_of: Callable[[], torch.Tensor], parameters: torch.Tensor, iterations: int = 200) -> None:
    """L-BFGS (strong Wolfe line search, at most `iterations`) on `parameters` in place."""
    optimiser = torch.optim.LBFGS([parameters], max_iter=iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_of()
        loss.backward()
        return loss

    optimiser.step(closure)


def fit_blur(periodogram: torch.Tensor, starts: list[tuple[float, float, float]] = STARTS) -> BlurFit:
    """The maximum-likelihood Gaussian blur of a photo from its mean LR periodogram `(T, T)` (float64).

    `starts`: (sigma_major, sigma_minor, angle) to run L-BFGS from; the best optimum is kept.

    Raises:
        RealSRError: no start converged.
    """
    objective, observed = _negative_log_likelihood(periodogram)
    level = float(observed.mean())
    best: tuple[float, torch.Tensor] | None = None
    for major, minor, angle in starts:
        blur = torch.tensor([_unbounded(major, *WIDTH_BOUNDS), _unbounded(minor, *WIDTH_BOUNDS), angle],
                            dtype=torch.float64)
        nuisance = torch.tensor([math.log(level) - 8, _unbounded(2.0, *SLOPE_BOUNDS), math.log(level * 1e-4)],
                                dtype=torch.float64, requires_grad=True)
        # The image spectrum and noise first, at the start's blur: from a far-off spectrum the joint
        # fit's first steps can throw the widths into the degenerate basin (widths -> 0, steepest alpha).
        _minimise(lambda: objective(torch.cat([blur, nuisance])), nuisance)
        p = torch.cat([blur, nuisance.detach()]).requires_grad_(True)
        _minimise(lambda: objective(p), p)
        with torch.no_grad():
            loss = float(objective(p))
        if math.isfinite(loss) and (best is None or loss < best[0]):
            best = (loss, p.detach())
    if best is None:
        raise RealSRError("the spectral blur fit did not converge on this image")
    p = best[1]
    major, minor = (float(_bounded(v, *WIDTH_BOUNDS)) for v in (p[0], p[1]))
    angle = float(p[2])
    if minor > major:
        major, minor, angle = minor, major, angle + math.pi / 2
    return BlurFit(major, minor, angle % math.pi, float(_bounded(p[4], *SLOPE_BOUNDS)))


def shrunk(fit: BlurFit, weight: float = SHRINK, typical: float = TYPICAL_SIGMA) -> BlurFit:
    """`fit` with each width moved `weight` of the way to `typical` in log space and clipped to the range."""
    def move(sigma: float) -> float:
        return float(np.clip(sigma ** (1 - weight) * typical**weight, MIN_SIGMA, MAX_SIGMA))

    return BlurFit(move(fit.sigma_major), move(fit.sigma_minor), fit.angle, fit.slope)


@dataclass
class SpectralEstimate:
    """One photo's spectral estimate."""

    kernel: np.ndarray
    """`(17, 17)` float64 x2 kernel, sum 1."""
    fit: BlurFit
    """The maximum-likelihood fit, before shrinking."""
    used: BlurFit
    """The shrunk fit `kernel` draws."""
    half_agreement_db: float
    """Agreement of the fits to the two halves of the tiles (checkerboard of 2x2 tile blocks), in
    re-synthesis dB of the photo (`confidence.kernel_agreement_db`)."""


def estimate_blur(image: np.ndarray) -> SpectralEstimate:
    """Estimate the x2 Gaussian blur of `image` `(H, W, 3)` float in [0, 1] (at least 64x64).

    Raises:
        RealSRError: the image is too small or has no detail.
    """
    height, width = image.shape[:2]
    tile = TILE if min(height, width) >= 2 * TILE else SMALL_TILE
    if min(height, width) < 2 * SMALL_TILE:
        raise RealSRError(f"image is {width}x{height} pixels; the spectral estimate needs at least "
                          f"{2 * SMALL_TILE}x{2 * SMALL_TILE}")
    grey = torch.from_numpy(np.mean(image, axis=-1, dtype=np.float64))  # no float64 copy of the colour image
    if float(grey.std()) < FLAT_STD:
        raise RealSRError("the image has no detail to estimate a blur from (it is flat)")
    periodograms = welch_periodograms(grey, tile)
    fit = fit_blur(periodograms.all)
    used = shrunk(fit)
    start = [(fit.sigma_major, fit.sigma_minor, fit.angle)]
    halves = [shrunk(fit_blur(half, start)).kernel() for half in periodograms.halves]
    return SpectralEstimate(used.kernel(), fit, used, kernel_agreement_db(image, halves))


def estimate(images: Sequence[np.ndarray], names: Sequence[str], settings: KernelSettings,
             jpeg_tables: Sequence[np.ndarray | None], on_progress: Callable[[int], None] | None) -> list[KernelEstimate]:
    """The `spectral` estimator (`estimators.ESTIMATORS`): `estimate_blur` on each photo, the halves' agreement
    (`half_agreement_db`, trusted from `TRUSTED_DB`) as its trust."""
    estimates = []
    for image in images:
        spectral = estimate_blur(image)
        agreement = spectral.half_agreement_db
        trust = agreement_trust(agreement, TRUSTED_DB, agreement >= TRUSTED_DB, HALVES)
        report = kernel_report(spectral.kernel, (0.0, 0.0), True, settings.scale)
        fit = spectral.fit
        report.update(method="spectral", fit_sigma_major_px=fit.sigma_major, fit_sigma_minor_px=fit.sigma_minor,
                      angle_deg=float(np.degrees(fit.angle)), spectrum_slope=fit.slope,
                      half_agreement_db=agreement, trusted=trust.trusted)
        if on_progress is not None:
            on_progress(1)
        estimates.append(KernelEstimate.at_scale(spectral.kernel, settings.scale, trust, report))
    return estimates


def trust_of(report: dict) -> Trust:
    """The halves' agreement a spectral report records."""
    return agreement_trust(float(report["half_agreement_db"]), TRUSTED_DB, report["trusted"], HALVES)
