"""Blind blur estimation over several lens-blur families by spectral maximum likelihood
(`realsr kernels --method families`, the default of `realsr adapt`).

`spectral` fits one anisotropic Gaussian to the LR photo's Welch periodogram by the Whittle
likelihood of the model

    E|Y(u)|^2 = sum_a c |f_a|^-alpha |K(f_a)|^2 + eta^2,   f_a = (u + a) / 2

(a power-law clean image blurred by K, sub-sampled x2 with its 4 aliases, plus white noise). Here the
same likelihood is maximised for each of three kernel families (`family_kernels`), whose transfer
functions K are closed forms (docs/kernel_prior.md, "Kernel families"):

- `gaussian`: anisotropic Gaussian, widths s1 >= s2 and an angle: exp(-2 pi^2 f'Sf);
- `disk` (defocus): a uniform disk of radius r, pixel-antialiased (its coverage of each pixel), then a
  Gaussian of width g: 2 J1(2 pi r |f|) / (2 pi r |f|) * sinc(f_r) sinc(f_c) * exp(-2 pi^2 g^2 |f|^2);
- `motion` (linear camera shake): a segment of length L at an angle, pixel-antialiased, then a
  Gaussian of width g: sinc(L f.d) * sinc(f_r) sinc(f_c) * exp(-2 pi^2 g^2 |f|^2);

and the family with the lowest BIC (2 n NLL + k log n, n the number of frequencies fitted) is kept. The
size of the kept kernel (geometric mean Gaussian width, disk radius, segment length) is shrunk in log
space towards the family's typical size by the posterior weight v / (v + p^2), where v is the variance
of the log size from the likelihood's own curvature (the Laplace approximation, times `CURVATURE_INFLATION`
for a model that real photos only approximately obey) and p the family's prior spread: a
well-determined fit keeps its size and its anisotropy; the anisotropy itself is never shrunk.

On JPEG input the frequencies that the camera's quantisation removes carry no blur: with the
luminance quantisation table (`data.jpeg.luminance_table`) each LR frequency maps to the DCT
frequency that carries it, and frequencies whose quantisation step exceeds `JPEG_MAX_STEP` grey levels
are left out of the likelihood.

Trust: the likelihood assumes a natural photo (a smooth power-law spectrum with one orientation term).
Documents, periodic textures and microscopy break that and the fit then reads their content as blur,
often far from the truth, while fitting just as confidently. Two checks of the chosen fit ask whether
the photo is one the model describes, and a third whether the families agree (docs/evaluation.md, "Trust"):

- the clean image's spectral slope alpha is at least `MIN_SLOPE` (natural photos fall near 2; a flatter
  spectrum is a document's or a texture's, whose fine detail the fit mistakes for sharpness or blur);
- the residual spread, the standard deviation of log(observed / fitted) over the fitted frequencies in
  excess of what the Welch average of its tiles leaves by chance (psi'(tiles), the variance of the log
  of a mean of `tiles` exponential variables), is at most `MAX_RESIDUAL_SPREAD` (periodic content puts
  power in peaks the smooth model cannot follow);
- the photo re-synthesised with the kept kernel and with the runner-up family's differs by at most
  `MIN_FAMILY_AGREEMENT_DB` (PSNR): otherwise two families the likelihood hardly tells apart would make
  different training data.

A fit that fails any of them is untrusted, and `realsr adapt` trains with the constant fallback kernel
for that photo. The orientation (the amplitude of the spectrum's 2nd angular harmonic) is reported too;
as a check it did not pay on the development set.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.kernel_estimation.confidence import IDENTICAL_DB, kernel_agreement_db
from realsr_fast.kernel_estimation.estimators import KernelEstimate, KernelSettings, Trust
from realsr_fast.kernel_estimation.family_kernels import FAMILIES, render_kernel, transfer_power
from realsr_fast.kernel_estimation.gaussians import TYPICAL_SIGMA
from realsr_fast.kernel_estimation.postprocess import X2_SIZE
from realsr_fast.kernel_estimation.quality import kernel_report
from realsr_fast.kernel_estimation.spectral import (
    FLAT_STD,
    LOWEST_FREQUENCY,
    SCALE,
    SLOPE_BOUNDS,
    SMALL_TILE,
    TILE,
    _bounded,
    _minimise,
    _unbounded,
    welch_periodograms,
)

WIDTH_BOUNDS = (0.1, 8.0)
"""Gaussian widths and the smoothing width g (HR px) during the fit."""
RADIUS_BOUNDS = (0.3, 8.0)
"""Disk radius (HR px)."""
LENGTH_BOUNDS = (0.5, 16.0)
"""Motion segment length (HR px)."""
SMOOTH_BOUNDS = (0.05, 4.0)
"""Gaussian smoothing width g of the disk and motion families (HR px)."""
TYPICAL_SIZE = {"gaussian": TYPICAL_SIGMA, "disk": 2.0, "motion": 4.0}
"""The shrink target of each family: the median size of its prior (docs/evaluation.md, "Cases"):
Gaussian variances uniform in [0.6, 5] (median sqrt(2.8) px), disk radius uniform in [1, 3] px,
segment length uniform in [2, 6] px."""
PRIOR_LOG_SD = {"gaussian": 0.28, "disk": 0.31, "motion": 0.31}
"""Standard deviation of the log size under each family's prior (of the uniform draws above)."""
CURVATURE_INFLATION = 1.0
"""Factor on the Laplace variance of the log size (chosen on the development set, docs/evaluation.md)."""
BIC_WEIGHT = 1.0
"""Factor on the BIC's parameter penalty (1: plain BIC; not tuned, docs/evaluation.md)."""
MIN_SLOPE = 1.2
"""Least fitted spectral slope alpha of a trusted estimate (chosen on the development set, docs/evaluation.md,
"Trust")."""
MAX_RESIDUAL_SPREAD = 0.5
"""Largest excess standard deviation of log(observed / fitted spectrum) of a trusted estimate (development set)."""
MIN_FAMILY_AGREEMENT_DB = 30.0
"""Least re-synthesis agreement (dB) between the kept kernel and the runner-up family's of a trusted estimate
(development set)."""
JPEG_MAX_STEP = 12.0
"""Largest luminance quantisation step (grey levels) of a DCT frequency kept in the JPEG fit (development set)."""
MAX_SIZE = {"gaussian": 4.0, "disk": 5.0, "motion": 10.0}
"""Largest kept size (HR px): wider does not fit the 17x17 kernel window."""
MIN_SIZE = 0.3

STARTS: dict[str, list[tuple[float, ...]]] = {
    "gaussian": [(1.0, 1.0, 0.0), (2.0, 2.0, 0.0), (2.0, 1.0, 0.0), (2.0, 1.0, 1.05), (2.0, 1.0, 2.1)],
    "disk": [(1.2, 0.3), (2.5, 0.3)],
    "motion": [(3.5, a, 0.4) for a in (0.0, 0.8, 1.6, 2.4)],
}
"""L-BFGS starts per family (family parameters in HR px and radians)."""
NUISANCE_ITERATIONS, JOINT_ITERATIONS = 40, 120
"""L-BFGS iterations: the image spectrum and noise at the start's blur, then everything together."""


_BOUNDS = {"gaussian": (WIDTH_BOUNDS, WIDTH_BOUNDS, None), "disk": (RADIUS_BOUNDS, SMOOTH_BOUNDS),
           "motion": (LENGTH_BOUNDS, None, SMOOTH_BOUNDS)}


def _to_params(family: str, raw: torch.Tensor) -> list[torch.Tensor]:
    return [raw[i] if b is None else _bounded(raw[i], *b) for i, b in enumerate(_BOUNDS[family])]


def _to_raw(family: str, values: tuple[float, ...]) -> list[float]:
    return [v if b is None else _unbounded(v, *b) for v, b in zip(values, _BOUNDS[family])]


def frequency_mask(tile: int, jpeg_table: np.ndarray | None = None) -> torch.Tensor:
    """`(tile, tile)` bool: the LR frequencies fitted (above `LOWEST_FREQUENCY` cycles per tile, and on JPEG
    input those whose DCT frequency's quantisation step is at most `JPEG_MAX_STEP`)."""
    u = torch.fft.fftfreq(tile, dtype=torch.float64)
    u_row, u_col = torch.meshgrid(u, u, indexing="ij")
    used = u_row.square().add(u_col.square()).sqrt() >= LOWEST_FREQUENCY / tile
    if jpeg_table is not None:
        # DCT basis k of an 8-point block oscillates at k / 16 cycles per pixel.
        index = lambda v: (v.abs() * 16).round().clamp(max=7).long()  # noqa: E731
        steps = torch.from_numpy(np.asarray(jpeg_table, dtype=np.float64))[index(u_row), index(u_col)]
        used &= steps <= JPEG_MAX_STEP
        # The 8-px block grid puts its artefacts on the multiples of 1/8 cycle per pixel, in each axis.
        on_grid = lambda v: ((v * 8 - (v * 8).round()).abs() * tile / 8 < 0.5) & (v != 0)  # noqa: E731
        used &= ~(on_grid(u_row) | on_grid(u_col))
    return used


@dataclass
class FamilyFit:
    """One family's maximum-likelihood fit."""

    family: str
    params: tuple[float, ...]
    """Gaussian: (sigma_major, sigma_minor, angle); disk: (radius, smooth); motion: (length, angle, smooth)."""
    slope: float
    nll: float
    """Mean Whittle negative log-likelihood per fitted frequency."""
    bic: float
    log_size_sd: float
    """Laplace standard deviation of the log size (from the curvature of the likelihood)."""
    orientation: float
    """Amplitude of the fitted log spectrum's 2nd angular harmonic."""
    residual_spread: float
    """Standard deviation of log(observed / fitted spectrum) in excess of the Welch average's own."""

    @property
    def size(self) -> float:
        """Geometric mean Gaussian width, disk radius or segment length (HR px)."""
        if self.family == "gaussian":
            return math.sqrt(self.params[0] * self.params[1])
        return self.params[0]

    def with_size(self, size: float) -> FamilyFit:
        """The same fit scaled to `size` (a Gaussian keeps its axis ratio)."""
        if self.family == "gaussian":
            ratio = math.sqrt(self.params[0] / self.params[1])
            params = (size * ratio, size / ratio, self.params[2])
        else:
            params = (size, *self.params[1:])
        return FamilyFit(self.family, params, self.slope, self.nll, self.bic, self.log_size_sd, self.orientation,
                         self.residual_spread)

    def unnatural(self) -> list[str]:
        """The natural-photo checks this fit fails (see the module docstring), in words; empty when it passes."""
        failed = []
        if self.slope < MIN_SLOPE:
            failed.append(f"spectral slope {self.slope:.2f} < {MIN_SLOPE:g}")
        if self.residual_spread > MAX_RESIDUAL_SPREAD:
            failed.append(f"spectrum residual {self.residual_spread:.2f} > {MAX_RESIDUAL_SPREAD:g}")
        return failed

    def kernel(self, size: int = X2_SIZE) -> np.ndarray:
        """`(size, size)` float64 x2 kernel, sum 1, centred as KernelGAN's."""
        return render_kernel(self.family, self.params, size)


def _objective(periodogram: torch.Tensor, family: str, used: torch.Tensor):
    tile = periodogram.shape[0]
    u = torch.fft.fftfreq(tile, dtype=torch.float64)
    u_row, u_col = torch.meshgrid(u, u, indexing="ij")
    f_row = torch.stack([((u_row[used] + a) / SCALE + 0.5) % 1 - 0.5 for a in range(SCALE) for _ in range(SCALE)])
    f_col = torch.stack([((u_col[used] + b) / SCALE + 0.5) % 1 - 0.5 for _ in range(SCALE) for b in range(SCALE)])
    radius2 = f_row.square() + f_col.square() + (0.25 / tile) ** 2
    log_radius2 = radius2.log()
    cos2 = (f_row.square() - f_col.square()) / radius2  # cos 2 theta, sin 2 theta of each alias
    sin2 = 2 * f_row * f_col / radius2
    observed = periodogram[used]
    count = len(_BOUNDS[family])

    def expected_of(p: torch.Tensor) -> torch.Tensor:
        power = transfer_power(family, _to_params(family, p[:count]), f_row, f_col)
        clean = torch.exp(p[count] - 0.5 * _bounded(p[count + 1], *SLOPE_BOUNDS) * log_radius2
                          + p[count + 3] * cos2 + p[count + 4] * sin2)
        return (clean * power).sum(0) + p[count + 2].exp()

    def objective(p: torch.Tensor) -> torch.Tensor:
        expected = expected_of(p)
        return (observed / expected + expected.log()).mean()

    return objective, expected_of, observed


def _residual_spread(observed: torch.Tensor, expected: torch.Tensor, tiles: int) -> float:
    """Standard deviation of log(observed / expected) beyond psi'(tiles), the variance the log of a mean
    of `tiles` independent exponential periodogram values has by chance."""
    chance = float(torch.special.polygamma(1, torch.tensor(float(max(1, tiles)), dtype=torch.float64)))
    return math.sqrt(max(0.0, float((observed / expected).log().var()) - chance))


def fit_family(periodogram: torch.Tensor, family: str, used: torch.Tensor, tiles: int = 1,
               starts: list[tuple[float, ...]] | None = None) -> FamilyFit:
    """The maximum-likelihood member of `family` for a mean LR periodogram `(T, T)` float64.

    `tiles`: how many Welch tiles the periodogram averages. Half-overlapping tiles are about a quarter
    independent, which the likelihood's curvature and the BIC count; the residual spread compares with
    all of them (docs/evaluation.md, "Trust").
    """
    objective, expected_of, observed = _objective(periodogram, family, used)
    independent = max(1, tiles // 4)
    count = len(_BOUNDS[family])
    level = float(observed.mean())
    best: tuple[float, torch.Tensor] | None = None
    for start in starts or STARTS[family]:
        blur = torch.tensor(_to_raw(family, start), dtype=torch.float64)
        nuisance = torch.tensor([math.log(level) - 8, _unbounded(2.0, *SLOPE_BOUNDS), math.log(level * 1e-4),
                                 0.0, 0.0], dtype=torch.float64, requires_grad=True)
        _minimise(lambda: objective(torch.cat([blur, nuisance])), nuisance, NUISANCE_ITERATIONS)
        p = torch.cat([blur, nuisance.detach()]).requires_grad_(True)
        _minimise(lambda: objective(p), p, JOINT_ITERATIONS)
        with torch.no_grad():
            loss = float(objective(p))
        if math.isfinite(loss) and (best is None or loss < best[0]):
            best = (loss, p.detach())
    if best is None:
        raise RealSRError(f"the spectral {family} blur fit did not converge on this image")
    loss, p = best
    params = [float(v) for v in _to_params(family, p[:count])]
    if family == "gaussian" and params[1] > params[0]:
        params = [params[1], params[0], params[2] + math.pi / 2]
    if family in ("gaussian", "motion"):
        index = 2 if family == "gaussian" else 1
        params[index] %= math.pi
    n = int(observed.numel())
    # Laplace: the curvature of the total NLL (n frequencies, `tiles` averaged periodograms) in the raw
    # parameters, the variance of the log size by the delta method.
    hessian = torch.autograd.functional.hessian(objective, p) * n * independent
    try:
        covariance_raw = torch.linalg.inv(hessian)
        gradient = torch.zeros_like(p)
        log_size_of = _log_size_jacobian(family, p)
        gradient[:count] = log_size_of
        variance = float(gradient @ covariance_raw @ gradient)
    except RuntimeError:
        variance = float("inf")
    log_size_sd = math.sqrt(variance) if variance > 0 and math.isfinite(variance) else float("inf")
    with torch.no_grad():
        spread = _residual_spread(observed, expected_of(p), tiles)
    k = count + 5
    bic = 2 * n * independent * loss + BIC_WEIGHT * k * math.log(n * independent)
    return FamilyFit(family, tuple(params), float(_bounded(p[count + 1], *SLOPE_BOUNDS)), loss, bic,
                     log_size_sd, float(torch.hypot(p[count + 3], p[count + 4])), spread)


def _log_size_jacobian(family: str, p: torch.Tensor) -> torch.Tensor:
    """d log(size) / d raw parameters of the family."""
    count = len(_BOUNDS[family])
    raw = p[:count].detach().clone().requires_grad_(True)
    params = _to_params(family, raw)
    log_size = 0.5 * (params[0].log() + params[1].log()) if family == "gaussian" else params[0].log()
    (gradient,) = torch.autograd.grad(log_size, raw)
    return gradient


def shrink(fit: FamilyFit, inflation: float = CURVATURE_INFLATION) -> FamilyFit:
    """`fit` with its log size moved towards the family's typical size by the posterior weight
    v / (v + p^2) (v: inflated Laplace variance, p: prior spread), clipped to the family's range."""
    variance = inflation * fit.log_size_sd**2
    prior = PRIOR_LOG_SD[fit.family] ** 2
    weight = 1.0 if not math.isfinite(variance) else variance / (variance + prior)
    log_size = (1 - weight) * math.log(fit.size) + weight * math.log(TYPICAL_SIZE[fit.family])
    return fit.with_size(float(np.clip(math.exp(log_size), MIN_SIZE, MAX_SIZE[fit.family])))


@dataclass
class FamiliesEstimate:
    """One photo's estimate over the families."""

    kernel: np.ndarray
    """`(17, 17)` float64 x2 kernel, sum 1."""
    fits: dict[str, FamilyFit]
    """Every family's maximum-likelihood fit."""
    chosen: FamilyFit
    """The lowest-BIC fit, before shrinking."""
    used: FamilyFit
    """The shrunk fit `kernel` draws."""
    trust: Trust
    """The chosen fit's natural-photo checks and the agreement with the runner-up family."""


def estimate_families(image: np.ndarray, jpeg_table: np.ndarray | None = None,
                      families: tuple[str, ...] = FAMILIES) -> FamiliesEstimate:
    """Estimate the x2 blur of `image` `(H, W, 3)` float in [0, 1] (at least 64x64) over `families`.

    `jpeg_table`: the photo's 8x8 luminance quantisation table (natural order) when it was a JPEG.

    Raises:
        RealSRError: the image is too small or has no detail.
    """
    height, width = image.shape[:2]
    if min(height, width) < 2 * SMALL_TILE:
        raise RealSRError(f"image is {width}x{height} pixels; the spectral estimate needs at least "
                          f"{2 * SMALL_TILE}x{2 * SMALL_TILE}")
    tile = TILE if min(height, width) >= 2 * TILE else SMALL_TILE
    grey = torch.from_numpy(np.mean(image, axis=-1, dtype=np.float64))
    if float(grey.std()) < FLAT_STD:
        raise RealSRError("the image has no detail to estimate a blur from (it is flat)")
    periodogram = welch_periodograms(grey, tile).all
    step = tile // 2
    tiles = ((height - tile) // step + 1) * ((width - tile) // step + 1)
    used = frequency_mask(tile, jpeg_table)
    fits = {name: fit_family(periodogram, name, used, tiles) for name in families}
    ranked = sorted(fits.values(), key=lambda f: f.bic)
    chosen = ranked[0]
    kept = shrink(chosen)
    kernel = kept.kernel()
    # What the runner-up family would do to this photo, against what the kept kernel does (dB).
    agreement = kernel_agreement_db(image, [kernel, shrink(ranked[1]).kernel()]) if len(ranked) > 1 else IDENTICAL_DB
    return FamiliesEstimate(kernel, fits, chosen, kept, _trust(chosen.unnatural(), agreement))


def estimate(images: Sequence[np.ndarray], names: Sequence[str], settings: KernelSettings,
             jpeg_tables: Sequence[np.ndarray | None], on_progress: Callable[[int], None] | None) -> list[KernelEstimate]:
    """The `families` estimator (`estimators.ESTIMATORS`): `estimate_families` on each photo, with its JPEG table."""
    estimates = []
    for image, table in zip(images, jpeg_tables):
        found = estimate_families(image, table)
        chosen = found.chosen
        report = kernel_report(found.kernel, (0.0, 0.0), True, settings.scale)
        report.update(method="families", family=chosen.family, fit_params=list(chosen.params),
                      used_params=list(found.used.params), log_size_sd=chosen.log_size_sd, spectrum_slope=chosen.slope,
                      orientation=chosen.orientation, residual_spread=chosen.residual_spread,
                      unnatural=chosen.unnatural(), trusted=found.trust.trusted,
                      family_agreement_db=found.trust.agreement_db,
                      jpeg=table is not None, bic={name: fit.bic for name, fit in found.fits.items()})
        if on_progress is not None:
            on_progress(1)
        estimates.append(KernelEstimate.at_scale(found.kernel, settings.scale, found.trust, report))
    return estimates


def trust_of(report: dict) -> Trust:
    """The trust a families report records: its failed natural-photo checks and the runner-up agreement
    (a report written before the checks existed keeps the verdict it recorded)."""
    agreement = float(report["family_agreement_db"])
    if "unnatural" not in report:
        return Trust(agreement, MIN_FAMILY_AGREEMENT_DB, bool(report["trusted"]),
                     f"the verdict recorded with the estimate (agreement with the runner-up blur family {agreement:.1f} dB)")
    return _trust(list(report["unnatural"]), agreement)


def _trust(unnatural: list[str], agreement: float) -> Trust:
    """Untrusted when a natural-photo check failed or the runner-up family's kernel re-synthesises the
    photo differently by more than `MIN_FAMILY_AGREEMENT_DB` allows."""
    failed = list(unnatural)
    if agreement < MIN_FAMILY_AGREEMENT_DB:
        failed.append(f"agreement with the runner-up blur family {agreement:.1f} dB < {MIN_FAMILY_AGREEMENT_DB:g} dB")
    reason = ("; ".join(failed) if failed else
              f"a natural photo's spectrum, agreement with the runner-up blur family {agreement:.1f} dB")
    return Trust(agreement, MIN_FAMILY_AGREEMENT_DB, not failed, reason)
