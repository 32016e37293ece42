"""Noise for any photos: the noise folder `realsr adapt` trains with, chosen from the photos themselves.

Three sources, tried in this order; the first that gives `ENOUGH_PATCHES` patches wins:
1. **official rule**: RealSR's flat-patch mining (`noise_mining`, grey variance < 20, mean > 0) at
   the largest patch side of `PATCH_LADDER` (256, 128, 64, 32; never below what training needs)
   that keeps enough patches;
2. **adapted rule**: the same mining with the variance threshold taken from the measured noise:
   `max_var = max(20, FLAT_FACTOR * sigma^2)`, sigma the median over the photos of a robust
   per-photo estimate (the MAD of Immerkaer's Laplacian-difference residual, :func:`estimate_sigma`);
3. **fitted model**: where no flat region exists, a signal-dependent Gaussian per channel,
   `variance = a * intensity + b` (0..255 scale), fitted on the high-pass residual binned by local
   intensity (:func:`fit_noise_model`), and `SYNTHETIC_COUNT` patches drawn from it at colours of the
   photos are written as an ordinary noise folder (:func:`write_synthetic_noise`), which the
   Degrader reads like mined patches (it adds a patch minus its mean, so the intensity dependence
   survives only as the spread of levels among the patches).

Example:
    >>> choice = choose_noise("train_photos/", "noise/", min_patch=32)
    >>> choice.source, choice.patch, choice.patches
    ('adapted rule', 64, 23)
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from realsr_fast.batch import source_images, to_rgb8
from realsr_fast.data.noise_bank import MANIFEST_NAME
from realsr_fast.data.noise_mining import NOISE_TRACKS, NoiseSettings, find_noise_patches, mine_noise_folder
from realsr_fast.errors import RealSRError
from realsr_fast.io import atomic_write, read_image, write_image

#: Patch sides tried, largest first (RealSR's 256, then halves down to what a CPU LR crop needs).
PATCH_LADDER = (256, 128, 64, 32)
#: Kept patches over all photos below which a rule is not "enough": the Degrader draws a random
#: patch per sample, and fewer than this many made the noise of a batch repeat within a few steps.
ENOUGH_PATCHES = 8
#: A patch is flat under the adapted rule when its grey variance is below this multiple of the
#: measured noise variance (a pure-noise 32x32 patch's sample variance is within 5 % of sigma^2 at
#: one standard error; the margin admits slight shading).
FLAT_FACTOR = 1.5
#: Intensity bins of the model fit (0..255) and the fewest pixels a bin needs to count.
FIT_BINS = 16
MIN_BIN_PIXELS = 200
#: Intensities this close to 0 or 255 are left out of the fit (clipping shrinks their spread).
CLIP_MARGIN = 8.0
#: Synthetic patches written by the fitted model, and their smallest side.
SYNTHETIC_COUNT = 64
SYNTHETIC_MIN_PATCH = 64
#: Immerkaer's noise-estimation mask: zero on planes and ramps; its squared weights sum to 36.
_LAPLACE_DIFF = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_MAD_TO_SIGMA = 1.4826


@dataclass
class NoiseModel:
    """Per-channel (R, G, B) `variance = a * intensity + b` on the 0..255 scale."""

    a: list[float]
    b: list[float]

    def sigma(self, intensity: np.ndarray) -> np.ndarray:
        """Noise std of `(..., 3)` RGB intensities (0..255), same shape."""
        variance = np.asarray(self.a) * intensity + np.asarray(self.b)
        return np.sqrt(np.clip(variance, 0.0, None))


@dataclass
class NoiseChoice:
    """Which source made the noise folder and with what: the patch side and threshold of a mining rule,
    or the fitted model; `tried` lists every rule tried as `(rule, patch, max_var, kept)`."""

    source: str
    patches: int
    patch: int
    max_var: float | None = None
    min_mean: float | None = None
    sigma: float | None = None
    model: NoiseModel | None = None
    tried: list[tuple[str, int, float, int]] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the report and the terminal."""
        if self.model is not None:
            terms = ", ".join(f"{c} {a:.3f}*I + {b:.2f}" for c, a, b in zip("RGB", self.model.a, self.model.b))
            return (f"fitted model (no flat region: every mining rule kept fewer than {ENOUGH_PATCHES} patches): "
                    f"variance = {terms} (0..255), {self.patches} synthetic {self.patch} px patches")
        return (f"{self.source}: {self.patches} flat {self.patch} px patches, grey variance < {self.max_var:g}, "
                f"mean > {self.min_mean:g}" + (f" (measured sigma {self.sigma:.2f})" if self.sigma is not None else ""))

    def as_dict(self) -> dict:
        return asdict(self)


def _residual(channel: np.ndarray) -> np.ndarray:
    """Immerkaer's residual of one `(H, W)` float channel, divided by 6 so that white noise of std
    sigma gives a residual of std sigma; `(H-2, W-2)`."""
    x = torch.from_numpy(np.ascontiguousarray(channel, dtype=np.float32))[None, None]
    mask = torch.from_numpy(_LAPLACE_DIFF.astype(np.float32) / 6.0)[None, None]
    return torch.nn.functional.conv2d(x, mask)[0, 0].numpy()


def estimate_sigma(image: np.ndarray) -> float:
    """Robust noise std of an `(H, W, 3)` uint8 photo's grey level (PIL 'L' weights, 0..255): the MAD
    of Immerkaer's residual, which ignores planes and ramps and, being a median, most edges."""
    grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    residual = _residual(grey)
    return float(_MAD_TO_SIGMA * np.median(np.abs(residual - np.median(residual))))


def fit_noise_model(images: list[np.ndarray]) -> NoiseModel:
    """Fit `variance = a * intensity + b` per channel on `(H, W, 3)` uint8 photos.

    Per channel: the residual of :func:`estimate_sigma`'s mask and the 3x3 local mean as intensity;
    in each of `FIT_BINS` intensity bins with enough pixels, the robust variance `(1.4826 MAD)^2`;
    then weighted least squares of those variances on the bin's mean intensity (weights: pixel
    counts), with `a, b >= 0`.

    Raises:
        RealSRError: no bin had enough pixels (photos of under a few hundred pixels).
    """
    a_list, b_list = [], []
    box = torch.full((1, 1, 3, 3), 1.0 / 9.0)
    for c in range(3):
        residuals, levels = [], []
        for image in images:
            channel = image[..., c].astype(np.float32)
            residuals.append(_residual(channel).ravel())
            levels.append(torch.nn.functional.conv2d(torch.from_numpy(channel)[None, None], box)[0, 0].numpy().ravel())
        residual, level = np.concatenate(residuals), np.concatenate(levels)
        keep = (level > CLIP_MARGIN) & (level < 255.0 - CLIP_MARGIN)
        residual, level = residual[keep], level[keep]
        edges = np.linspace(0.0, 255.0, FIT_BINS + 1)
        xs, vs, ws = [], [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            inside = (level >= lo) & (level < hi)
            if inside.sum() < MIN_BIN_PIXELS:
                continue
            r = residual[inside]
            xs.append(float(level[inside].mean()))
            vs.append(float((_MAD_TO_SIGMA * np.median(np.abs(r - np.median(r)))) ** 2))
            ws.append(float(inside.sum()))
        if not xs:
            raise RealSRError("the photos are too small to fit a noise model (no intensity bin has "
                              f"{MIN_BIN_PIXELS} pixels); pass --noise NOISE_DIR")
        a, b = _nonnegative_line(np.array(xs), np.array(vs), np.array(ws))
        a_list.append(a)
        b_list.append(b)
    return NoiseModel(a_list, b_list)


def _nonnegative_line(x: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares `v ~ a x + b` with `a, b >= 0` (the best of the unconstrained fit, if
    feasible, and the two one-parameter fits)."""
    candidates = []
    if len(x) >= 2:
        design = np.stack([x, np.ones_like(x)], axis=1) * np.sqrt(w)[:, None]
        a, b = np.linalg.lstsq(design, v * np.sqrt(w), rcond=None)[0]
        if a >= 0 and b >= 0:
            candidates.append((float(a), float(b)))
    candidates.append((0.0, float(np.sum(w * v) / np.sum(w))))
    candidates.append((float(np.sum(w * v * x) / max(np.sum(w * x * x), 1e-12)), 0.0))
    return min(candidates, key=lambda ab: float(np.sum(w * (v - ab[0] * x - ab[1]) ** 2)))


def write_synthetic_noise(model: NoiseModel, images: list[np.ndarray], output: Path, patch: int,
                          count: int = SYNTHETIC_COUNT, seed: int = 0) -> int:
    """Write `count` `(patch, patch, 3)` uint8 patches of flat colour plus noise drawn from `model`
    into `output` with a manifest (the noise-folder format of `noise_bank`); returns `count`.

    Each patch's colour is a random pixel's local mean from `images`; its noise is independent per
    pixel and channel with std `model.sigma(colour)`."""
    rng = np.random.default_rng(seed)
    output.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(count):
        image = images[int(rng.integers(len(images)))]
        y, x = int(rng.integers(image.shape[0])), int(rng.integers(image.shape[1]))
        colour = image[max(0, y - 1):y + 2, max(0, x - 1):x + 2].reshape(-1, 3).astype(np.float64).mean(axis=0)
        noisy = colour + rng.standard_normal((patch, patch, 3)) * model.sigma(colour)
        name = f"synthetic_{i:03d}.png"
        write_image(output / name, np.clip(np.round(noisy), 0, 255).astype(np.uint8))
        entries.append({"file": name, "source": "fitted model", "colour": [round(float(v), 2) for v in colour]})
    manifest = {"settings": {"source": "fitted model", "patch": patch, "model": asdict(model)}, "patches": entries}
    with atomic_write(output / MANIFEST_NAME, "w") as file:
        json.dump(manifest, file, indent=1)
    return count


def ladder(min_patch: int, requested: int | None = None) -> list[int]:
    """Patch sides to try, largest first: `[requested]` when given, else the sides of `PATCH_LADDER`
    not below `min_patch` (or `[min_patch]` when it is above them all)."""
    if requested is not None:
        return [requested]
    return [p for p in PATCH_LADDER if p >= min_patch] or [min_patch]


def choose_noise(photos: str | os.PathLike, output: str | os.PathLike, min_patch: int, requested: int | None = None,
                 seed: int = 0, progress: bool = True) -> NoiseChoice:
    """Make the noise folder `output` from the photos of the folder `photos` (module docstring).

    Args:
        photos: folder of full-resolution photos (the training photos only, for `realsr adapt`).
        output: noise folder to write (patches + `manifest.json`).
        min_patch: the smallest usable side (training reads crops of the LR's size from patches).
        requested: one patch side instead of the ladder (`--noise-patch`).

    Raises:
        RealSRError: no readable photo, or photos too small even to fit the model.
    """
    output = Path(output)
    images = [to_rgb8(read_image(path)) for path in source_images(photos, "photo")]
    official = NOISE_TRACKS["df2k"]
    sigma = float(np.median([estimate_sigma(image) for image in images]))
    adapted_var = max(official.max_var, FLAT_FACTOR * sigma**2)
    sides = ladder(min_patch, requested)
    tried = []
    for rule, max_var in (("official rule", official.max_var), ("adapted rule", adapted_var)):
        if rule == "adapted rule" and adapted_var <= official.max_var:
            continue  # the same threshold as the official rule: nothing new to try
        for side in sides:
            settings = NoiseSettings(patch=side, stride=side, max_var=max_var, min_mean=official.min_mean)
            kept = sum(len(find_noise_patches(image, settings).kept) for image in images
                       if min(image.shape[:2]) >= side)
            tried.append((rule, side, round(max_var, 3), kept))
            if kept >= ENOUGH_PATCHES:
                report = mine_noise_folder(photos, output, settings, progress=progress)
                return NoiseChoice(rule, report.patches, side, max_var, official.min_mean,
                                   sigma if rule == "adapted rule" else None, None, tried)
    model = fit_noise_model(images)
    side = max(SYNTHETIC_MIN_PATCH, min_patch)
    count = write_synthetic_noise(model, images, output, side, seed=seed)
    return NoiseChoice("fitted model", count, side, None, None, sigma, model, tried)
