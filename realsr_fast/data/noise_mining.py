"""Noise mining: keep flat patches of real photos as samples of the camera's noise (docs/METHOD.md §4).

On the full-resolution photo (RGB, 8 bits), every full `patch x patch` window at steps of
`stride` (the last row and column included) gets the mean and population variance of its grey
level (PIL 'L', 0..255) from :func:`realsr_fast.ops.patch_stats`. A patch is kept when
`variance < max_var` and `mean > min_mean` (RealSR: 20 and 0 for DF2K, 20 and 50 for DPED); the
raw RGB patch is saved, without mean subtraction (that happens at training time).

For dense strides (stride < patch) two controls thin the kept set: `max_overlap`, the largest
fraction of a patch's area it may share with an already kept patch, and `max_per_image`. Both
pick greedily, flattest patch first.

When a photo keeps nothing, :attr:`NoiseResult.hint` says which threshold came closest and the
value that would keep a patch (the reference code left users with an empty folder,
Tencent/Real-SR #12).

Example:
    >>> result = find_noise_patches(read_image("dped/0001.jpg"), max_var=20, min_mean=50)
    >>> [(p.y, p.x) for p in result.kept]
    >>> report = mine_noise_folder("dped/", "noise/", min_mean=50)
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from realsr_fast import ops
from realsr_fast.batch import BatchReport, refuse_output_in_sources, source_images, to_rgb8
from realsr_fast.data.noise_bank import MANIFEST_NAME
from realsr_fast.data.noise_settings import NOISE_TRACKS, NoiseSettings  # noqa: F401 (NOISE_TRACKS: re-exported)
from realsr_fast.errors import RealSRError
from realsr_fast.io import atomic_write, read_image, write_image


@dataclass(frozen=True)
class NoisePatch:
    """A kept patch: top-left corner `(y, x)` in the photo, grey mean and variance (0..255 scale)."""

    y: int
    x: int
    mean: float
    var: float


@dataclass
class NoiseResult:
    """The patches kept in one photo, how many full patches it had, and a hint when none was kept."""

    kept: list[NoisePatch]
    candidates: int
    hint: str | None
    means: np.ndarray = field(repr=False)
    variances: np.ndarray = field(repr=False)


def find_noise_patches(image: np.ndarray, settings: NoiseSettings = NoiseSettings()) -> NoiseResult:
    """Find the noise patches of one photo.

    Args:
        image: `(H, W, 3)` uint8 RGB photo at full resolution.
        settings: the thresholds.

    Returns:
        A :class:`NoiseResult`; `kept` is sorted by position (row, then column), `means` and
        `variances` hold the statistics of every full patch (flattened).
    """
    settings.check()
    pixels = torch.from_numpy(np.require(image, requirements="W")).permute(2, 0, 1).unsqueeze(0)
    mean, var = (t[0] for t in ops.patch_stats(pixels, settings.patch, settings.stride))
    rows, cols = torch.meshgrid(
        torch.arange(mean.shape[0]) * settings.stride, torch.arange(mean.shape[1]) * settings.stride, indexing="ij"
    )
    mean, var, rows, cols = (t.flatten() for t in (mean, var, rows, cols))
    qualifies = (var < settings.max_var) & (mean > settings.min_mean)
    q_rows, q_cols, q_mean, q_var = (t[qualifies] for t in (rows, cols, mean, var))
    kept = [
        NoisePatch(int(q_rows[i]), int(q_cols[i]), float(q_mean[i]), float(q_var[i]))
        for i in _thin(q_rows, q_cols, q_var, settings)
    ]
    means, variances = mean.numpy(), var.numpy()
    hint = None if kept else closest_thresholds(means, variances, settings, image.shape[:2])
    return NoiseResult(kept, len(means), hint, means, variances)


def _thin(rows: torch.Tensor, cols: torch.Tensor, var: torch.Tensor, settings: NoiseSettings) -> list[int]:
    """Indices of the qualifying patches to keep, in position order.

    Flattest first, a patch is rejected when it shares more than `max_overlap` of its area with a
    patch already kept; picking stops at `max_per_image`. Keeping a patch marks every candidate it
    overlaps too much at once, so the cost grows with the kept patches, not with candidate pairs.
    """
    count = len(var)
    if settings.max_overlap is None and settings.max_per_image is None:
        return list(range(count))
    rows, cols = rows.numpy(), cols.numpy()
    limit = settings.max_per_image or count
    blocked = np.zeros(count, dtype=bool)
    kept: list[int] = []
    for i in np.argsort(var.numpy(), kind="stable"):
        if len(kept) == limit:
            break
        if blocked[i]:
            continue
        kept.append(int(i))
        if settings.max_overlap is not None:
            overlap_h = np.clip(settings.patch - np.abs(rows - rows[i]), 0, None)
            overlap_w = np.clip(settings.patch - np.abs(cols - cols[i]), 0, None)
            blocked |= overlap_h * overlap_w > settings.max_overlap * settings.patch**2
    return sorted(kept)


def closest_thresholds(
    means: np.ndarray, variances: np.ndarray, settings: NoiseSettings, size: tuple[int, int] | None = None
) -> str:
    """Why no patch qualified, and the --max-var / --min-mean values that would keep some.

    Args:
        means, variances: grey statistics of every full patch (any shape, same size).
        settings: the thresholds that kept nothing.
        size: `(H, W)` of the photo, named when it holds no full patch.
    """
    means, variances = np.ravel(means), np.ravel(variances)
    if means.size == 0:
        shape = f"the photo ({size[0]}x{size[1]}) is" if size else "the photos are"
        return f"{shape} smaller than one {settings.patch}x{settings.patch} patch; lower --patch"
    parts = []
    bright = means > settings.min_mean
    if bright.any():
        flattest = np.sort(variances[bright])
        wanted = [k for k in (1, 10, 100) if k <= flattest.size]
        keeps = ", ".join(
            f"--max-var {_just_above(flattest[k - 1])} would keep {k}" for k in wanted
        )
        parts.append(f"the flattest patch with mean > {settings.min_mean:g} has variance "
                     f"{flattest[0]:.3f} (--max-var is {settings.max_var:g}): {keeps}")
    flat = variances < settings.max_var
    if flat.any():
        brightest = float(means[flat].max())
        parts.append(f"{int(flat.sum())} flat patches are no brighter than --min-mean {settings.min_mean:g} "
                     f"(the brightest has mean {brightest:.2f}): --min-mean {_just_below(brightest)} would keep some")
    if not parts:
        parts.append(f"no patch is both brighter than --min-mean {settings.min_mean:g} and flatter than "
                     f"--max-var {settings.max_var:g}: lower --min-mean below {means.max():.2f} (the "
                     f"brightest mean) and raise --max-var above {variances.min():.2f} (the lowest variance)")
    return "; ".join(parts)


def _just_above(value: float) -> float:
    """The smallest 2-decimal number strictly above `value`."""
    candidate = round(float(value), 2)
    return round(candidate + 0.01, 2) if candidate <= value else candidate


def _just_below(value: float) -> float:
    """The largest 2-decimal number strictly below `value`."""
    candidate = round(float(value), 2)
    return round(candidate - 0.01, 2) if candidate >= value else candidate


def patch_name(stem: str, patch: NoisePatch) -> str:
    """File name of a kept patch: `<stem>_y<Y>_x<X>.png`."""
    return f"{stem}_y{patch.y}_x{patch.x}.png"


@dataclass
class NoiseReport(BatchReport):
    """A :class:`BatchReport` plus the number of patches kept and a folder-wide hint when it is 0."""

    patches: int = 0
    hint: str | None = None


def mine_noise_folder(
    source: str | os.PathLike,
    output: str | os.PathLike,
    settings: NoiseSettings = NoiseSettings(),
    overwrite: bool = False,
    progress: bool = True,
) -> NoiseReport:
    """Mine every photo of `source`; write the patches and `manifest.json` into `output`.

    Patch files that exist are not rewritten unless `overwrite` (the statistics are recomputed,
    which is cheap, and the manifest is rewritten). Photos that keep nothing get a note with the
    closest thresholds; unreadable photos are reported as failures and the others still mined.

    Raises:
        RealSRError: when `source` has no images, `output` is `source`, or a setting is invalid.
    """
    settings.check()
    photos = source_images(source, "photo")
    refuse_output_in_sources(output, [source])
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    report = NoiseReport("mined")
    entries, photo_entries, all_means, all_vars = [], {}, [], []
    for photo in tqdm(photos, desc="noise", unit="image", disable=not progress):
        try:
            image = to_rgb8(read_image(photo))
        except RealSRError as exc:
            report.fail(photo, exc)
            continue
        result = find_noise_patches(image, settings)
        for patch in result.kept:
            target = output / patch_name(photo.stem, patch)
            if overwrite or not target.exists():
                write_image(target, image[patch.y:patch.y + settings.patch, patch.x:patch.x + settings.patch])
            entries.append({"file": target.name, "source": str(photo), **asdict(patch)})
        if result.hint:
            report.notes.append(f"{photo.name}: no noise patch kept; {result.hint}")
        photo_entries[photo.name] = {"candidates": result.candidates, "kept": len(result.kept), "hint": result.hint}
        all_means.append(result.means)
        all_vars.append(result.variances)
        report.done.append(photo)
        report.patches += len(result.kept)
    if report.done and report.patches == 0:
        report.hint = closest_thresholds(np.concatenate(all_means), np.concatenate(all_vars), settings)
    manifest = {"settings": asdict(settings), "patches": entries, "photos": photo_entries}
    with atomic_write(output / MANIFEST_NAME, "w") as file:
        json.dump(manifest, file, indent=1)
    return report
