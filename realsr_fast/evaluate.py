"""Score a folder of super-resolved images against a folder of ground truth (`realsr eval`).

Images are paired by file stem: an exact stem match first, else an SR stem made of a GT stem
plus a suffix after `_`, `-` or `.` (`0001_x4.png`, `0001-RealSR.png` -> `0001.jpg`), the longest
such GT stem winning. Unpaired files, unreadable files and pairs whose sizes or channel counts
differ are reported as problems and skipped; the caller decides the exit code.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from realsr_fast import metrics
from realsr_fast.errors import RealSRError
from realsr_fast.io import atomic_write, list_images, read_image, write_json

SUFFIX_SEPARATORS = ("_", "-", ".")


@dataclass
class ImageScore:
    """The scores of one SR image; `scores` maps metric name (`psnr_y`, ...) to its value."""

    name: str
    sr: Path
    gt: Path
    scores: dict[str, float]


@dataclass
class Evaluation:
    """All per-image scores, their means, and what went wrong or was left out."""

    metric_names: list[str]
    images: list[ImageScore] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def mean(self) -> dict[str, float]:
        return {
            name: sum(image.scores[name] for image in self.images) / len(self.images) if self.images else math.nan
            for name in self.metric_names
        }


def _by_stem(files: list[Path], side: str, problems: list[str]) -> dict[str, Path]:
    """Map stems to files; stems shared by several files are ambiguous, reported and dropped."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(path.stem, []).append(path)
    for stem, paths in groups.items():
        if len(paths) > 1:
            problems.append(f"{side} files {', '.join(p.name for p in paths)} share the name {stem!r}; skipped")
    return {stem: paths[0] for stem, paths in groups.items() if len(paths) == 1}


def pair_images(sr_files: list[Path], gt_files: list[Path]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pair SR and GT files by stem (see the module docstring). Returns (pairs, problems)."""
    problems: list[str] = []
    sr_by_stem = _by_stem(sr_files, "SR", problems)
    gt_by_stem = _by_stem(gt_files, "GT", problems)
    pairs = {stem: (sr, gt_by_stem[stem]) for stem, sr in sr_by_stem.items() if stem in gt_by_stem}
    free_gt = sorted(set(gt_by_stem) - set(pairs), key=len, reverse=True)
    for stem, sr in sr_by_stem.items():
        if stem in pairs:
            continue
        match = next((g for g in free_gt if any(stem.startswith(g + sep) for sep in SUFFIX_SEPARATORS)), None)
        if match is None:
            problems.append(f"{sr.name}: no GT image with the same name")
            continue
        free_gt.remove(match)
        pairs[stem] = (sr, gt_by_stem[match])
    problems.extend(f"{gt_by_stem[stem].name}: no SR image for this GT image" for stem in sorted(free_gt))
    return [pairs[stem] for stem in sorted(pairs)], problems


def _shape_problem(sr_name: str, sr_shape: tuple, gt_shape: tuple) -> str:
    (sr_h, sr_w, sr_c), (gt_h, gt_w, gt_c) = sr_shape, gt_shape
    if (sr_h, sr_w) == (gt_h, gt_w):
        return f"{sr_name}: {sr_c} channel(s) but the GT has {gt_c}; skipped"
    hint = ""
    if 0 <= gt_h - sr_h < 8 and 0 <= gt_w - sr_w < 8:
        hint = " (a GT not cropped to a multiple of the scale? crop it to the SR size)"
    return f"{sr_name}: size {sr_w}x{sr_h} differs from the GT's {gt_w}x{gt_h}{hint}; skipped"


def _colour_channels(shape: tuple) -> int:
    """1 for grey (with or without alpha), 3 for colour."""
    return 1 if shape[2] <= 2 else 3


def evaluate_folders(
    sr_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    crop_border: int = 4,
    rgb: bool = False,
    lpips: bool = False,
    progress: bool = True,
) -> Evaluation:
    """PSNR/SSIM on Y (plus RGB variants with `rgb`, LPIPS with `lpips`) of every SR/GT pair.

    Args:
        sr_dir, gt_dir: folders of images (not searched recursively).
        crop_border: pixels removed from each side before scoring (use the SR scale).
        rgb: also report `psnr_rgb` and `ssim_rgb`.
        lpips: also report `lpips` when it can run offline; otherwise a note says why.
        progress: a progress bar on stderr (when it is a terminal).

    Raises:
        RealSRError: a folder is missing or holds no images, or no pair could be made.
    """
    pairs, problems = _pairs(sr_dir, gt_dir)
    names, notes = _metric_names(rgb, lpips)
    evaluation = Evaluation(
        metric_names=names,
        problems=problems,
        notes=notes,
        settings={"sr": str(sr_dir), "gt": str(gt_dir), "crop_border": crop_border,
                  "y_channel": "ITU-R BT.601 (MATLAB rgb2ycbcr)", "ssim_window": "11x11 Gaussian, sigma 1.5"},
    )
    for sr_path, gt_path in tqdm(pairs, desc="eval", unit="image", disable=None if progress else True):
        scored = _score_pair(sr_path, gt_path, names, crop_border)
        if isinstance(scored, str):
            evaluation.problems.append(scored)
        else:
            evaluation.images.append(scored)
    return evaluation


def _pairs(sr_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> tuple[list[tuple[Path, Path]], list[str]]:
    """The SR/GT pairs of the two folders and the pairing problems (:func:`pair_images`).

    Raises:
        RealSRError: a folder holds no images, or no pair could be made.
    """
    sr_files, gt_files = list_images([sr_dir]), list_images([gt_dir])
    for folder, files in ((sr_dir, sr_files), (gt_dir, gt_files)):
        if not files:
            raise RealSRError(f"{folder}: no images found (png, jpg, jpeg, webp, tif, tiff, bmp)")
    pairs, problems = pair_images(sr_files, gt_files)
    if not pairs:
        raise RealSRError(
            f"no image in {sr_dir} has a ground-truth image of the same name in {gt_dir} "
            f"(names are matched by stem, optionally with a suffix such as _x4)"
        )
    return pairs, problems


def _metric_names(rgb: bool, lpips: bool) -> tuple[list[str], list[str]]:
    """The metrics to report and the notes on those left out (LPIPS when it cannot run offline)."""
    names = ["psnr_y", "ssim_y"] + (["psnr_rgb", "ssim_rgb"] if rgb else [])
    notes = []
    if lpips:
        reason = metrics.lpips_unavailable_reason()
        if reason is None:
            names.append("lpips")
        else:
            notes.append(reason)
    return names, notes


def _score_pair(sr_path: Path, gt_path: Path, names: list[str], crop_border: int) -> ImageScore | str:
    """The `names` scores of one pair, or the problem that kept it from being scored."""
    try:
        sr, gt = read_image(sr_path), read_image(gt_path)
    except RealSRError as exc:
        return f"{exc}; skipped"
    if sr.shape[:2] != gt.shape[:2] or _colour_channels(sr.shape) != _colour_channels(gt.shape):
        return _shape_problem(sr_path.name, sr.shape, gt.shape)
    try:
        scores = {"psnr_y": metrics.psnr(sr, gt, crop_border), "ssim_y": metrics.ssim(sr, gt, crop_border)}
        if "psnr_rgb" in names:
            scores["psnr_rgb"] = metrics.psnr(sr, gt, crop_border, y_channel=False)
            scores["ssim_rgb"] = metrics.ssim(sr, gt, crop_border, y_channel=False)
        if "lpips" in names:
            scores["lpips"] = metrics.lpips_distance(sr, gt, crop_border)
    except RealSRError as exc:
        return f"{sr_path.name}: {exc}; skipped"
    return ImageScore(sr_path.stem, sr_path, gt_path, scores)


_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "lpips": "{:.4f}"}
_HEADINGS = {"psnr_y": "PSNR-Y", "ssim_y": "SSIM-Y", "psnr_rgb": "PSNR-RGB", "ssim_rgb": "SSIM-RGB", "lpips": "LPIPS"}


def _format(name: str, value: float) -> str:
    return _FORMATS[name.split("_")[0]].format(value) if math.isfinite(value) else str(value)


def format_table(evaluation: Evaluation) -> str:
    """A plain-text table: one row per image and a final `mean` row."""
    names = evaluation.metric_names
    rows = [[image.name] + [_format(n, image.scores[n]) for n in names] for image in evaluation.images]
    rows.append(["mean"] + [_format(n, v) for n, v in evaluation.mean.items()])
    header = ["image"] + [_HEADINGS[n] for n in evaluation.metric_names]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule] + [line(r) for r in rows[:-1]] + [rule, line(rows[-1])])


def _json_number(value: float) -> float | None:
    """JSON has no inf/nan: PSNR of identical images (inf) is written as null."""
    return value if math.isfinite(value) else None


def write_evaluation_json(evaluation: Evaluation, path: str | os.PathLike) -> None:
    """Settings, per-image scores, means, problems and notes as JSON, written atomically."""
    document = {
        "settings": evaluation.settings,
        "metrics": evaluation.metric_names,
        "images": [
            {"name": i.name, "sr": str(i.sr), "gt": str(i.gt), **{k: _json_number(v) for k, v in i.scores.items()}}
            for i in evaluation.images
        ],
        "mean": {k: _json_number(v) for k, v in evaluation.mean.items()},
        "problems": evaluation.problems,
        "notes": evaluation.notes,
    }
    write_json(path, document)


def write_csv(evaluation: Evaluation, path: str | os.PathLike) -> None:
    """One row per image plus a `mean` row, full precision, written atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["image", *evaluation.metric_names])
        for image in evaluation.images:
            writer.writerow([image.name, *(repr(image.scores[n]) for n in evaluation.metric_names)])
        writer.writerow(["mean", *(repr(v) for v in evaluation.mean.values())])
