"""Kernel estimation for images and for folders of photos (the `realsr kernels` job).

`estimate_kernels` runs the estimator that `KernelSettings.method` names (`estimators.ESTIMATORS`) on
images held in memory; `estimate_kernel_folder` does a folder: resumable, one failure never stops the
rest, under `torchrun` each rank takes every WORLD_SIZE-th image, and a `report.json` and a
`kernels.png` sheet cover everything the output folder holds.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from realsr_fast.batch import BatchReport, refuse_output_in_sources, source_images
from realsr_fast.data.jpeg import luminance_table
from realsr_fast.data.kernel_files import kernel_paths, load_kernel, save_kernel, write_sheet
from realsr_fast.device import resolve_device, torchrun_ranks
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image, write_json
from realsr_fast.kernel_estimation.estimators import KernelEstimate, KernelSettings
from realsr_fast.kernel_estimation.kernelgan.crops import prepare_image

REPORT_NAME = "report.json"
SHEET_NAME = "kernels.png"


def estimate_kernels(
    images: Sequence[np.ndarray],
    names: Sequence[str],
    settings: KernelSettings = KernelSettings(),
    jpeg_tables: Sequence[np.ndarray | None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[KernelEstimate]:
    """Estimate each image's kernel with `settings.method`'s estimator.

    Args:
        images: `(H, W, C)` uint8/uint16 arrays as `realsr_fast.io.read_image` gives; at least
            84x84 (RealSRError otherwise).
        names: one name per image; with `settings.seed` it fixes the image's random choices.
        settings: the method and its options (`KernelSettings`).
        jpeg_tables: each image's `(8, 8)` luminance quantisation table when it was a JPEG, else None
            (the `families` estimator leaves out what the quantisation removed).
        on_progress: progress callback, called after every iteration of a batched estimator, else
            after every image.

    Each estimate's `trust` (and its report: `seed_agreement_db`, `half_agreement_db` or
    `family_agreement_db`, and `trusted`) says whether two estimates of the photo agreed; see `confidence`.
    """
    prepared = [prepare_image(im) for im in images]
    tables = list(jpeg_tables) if jpeg_tables is not None else [None] * len(prepared)
    return settings.estimator.estimate(prepared, names, settings, tables, on_progress)


def _rank_share(files: list[Path]) -> list[Path]:
    rank, world, _ = torchrun_ranks()
    return files[rank::world]


def _report_path(out_dir: Path, stem: str) -> Path:
    return out_dir / stem / f"{stem}_report.json"


def _is_done(out_dir: Path, stem: str, scale: int) -> bool:
    paths = list(kernel_paths(out_dir, stem, scale).values()) + [_report_path(out_dir, stem)]
    return all(p.is_file() for p in paths)


def _write_estimate(out_dir: Path, stem: str, source: Path, estimate: KernelEstimate, scale: int) -> None:
    paths = kernel_paths(out_dir, stem, scale)
    save_kernel(paths["mat2"], paths["npy2"], estimate.kernel_x2)
    if estimate.kernel_x4 is not None:
        save_kernel(paths["mat4"], paths["npy4"], estimate.kernel_x4)
    write_json(_report_path(out_dir, stem), {"image": str(source), **estimate.report})  # last: marks it done


def _write_overview(out_dir: Path) -> None:
    """`report.json` and `kernels.png` over every image whose results the output folder holds."""
    reports, entries = {}, []
    for report_file in sorted(out_dir.glob("*/*_report.json")):
        stem = report_file.parent.name
        kernel_file = out_dir / stem / f"{stem}_kernel_x2.npy"
        if not kernel_file.is_file():
            continue
        report = json.loads(report_file.read_text(encoding="utf-8"))
        reports[stem] = report
        entries.append((stem, load_kernel(kernel_file), report.get("flags", [])))
    write_json(out_dir / REPORT_NAME, reports)
    write_sheet(out_dir / SHEET_NAME, entries)


def estimate_kernel_folder(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: KernelSettings = KernelSettings(),
    overwrite: bool = False,
    progress: bool = True,
) -> BatchReport:
    """Estimate the kernel of every image in `input_dir` into `out_dir` (see module docstring); the
    report lists the photos done, skipped (results exist) and failed, with why.

    A batched estimator (KernelGAN) trains `settings.batch` images (times `settings.runs`) together and
    the progress bar counts its iterations; the others do one photo at a time, each written as soon as
    it is done, and the bar counts photos. Existing results are skipped unless `overwrite`; unreadable
    or too small images are reported and skipped.
    """
    resolve_device(settings.device)  # an unavailable device fails here, not photo after photo
    out = Path(out_dir)
    refuse_output_in_sources(out, [input_dir])
    files = _rank_share(source_images(input_dir, "photo"))
    summary = BatchReport("estimated")
    todo = []
    for path in files:
        if not overwrite and _is_done(out, path.stem, settings.scale):
            summary.skipped.append(path)
        else:
            todo.append(path)
    group_size = settings.batch if settings.estimator.batched else 1
    groups = [todo[i : i + group_size] for i in range(0, len(todo), group_size)]
    steps = settings.iterations if settings.estimator.batched else None  # per group; None: one per image
    bar = tqdm(total=sum(steps or len(group) for group in groups), unit="it" if steps else "image",
               disable=not progress or not groups, desc="kernels")
    for group in groups:
        _estimate_group(group, out, settings, bar, summary)
    bar.close()
    if summary.done or summary.skipped:
        _write_overview(out)
    return summary


def _estimate_group(group: list[Path], out: Path, settings: KernelSettings, bar: tqdm, summary: BatchReport) -> None:
    """Estimate and write one group of photos (`bar` advanced by `settings.iterations` or one per photo)."""
    steps = settings.iterations if settings.estimator.batched else None
    images, sources = [], []
    for path in group:
        try:
            image = read_image(path)
            prepare_image(image)  # size check before the batch starts
        except RealSRError as exc:
            summary.fail(path, exc)
            tqdm.write(f"realsr kernels: skipped {path}: {exc}", file=sys.stderr)
            if steps is None:
                bar.update(1)
            continue
        images.append(image)
        sources.append(path)
    if not images:
        bar.update(steps or 0)
        return
    names = [path.stem for path in sources]
    try:
        estimates = estimate_kernels(images, names, settings, [luminance_table(path) for path in sources],
                                     on_progress=lambda _: bar.update(1))
    except RealSRError as exc:  # e.g. a flat photo: the rest go on
        bar.update(0 if steps else len(images))
        for name, source in zip(names, sources):
            summary.fail(source, exc)
            tqdm.write(f"realsr kernels: failed {source}: {exc}", file=sys.stderr)
        return
    for name, source, estimate in zip(names, sources, estimates):
        _write_estimate(out, name, source, estimate, settings.scale)
        summary.done.append(source)
        if estimate.report["flags"]:
            tqdm.write(f"realsr kernels: {name}: {', '.join(estimate.report['flags'])}", file=sys.stderr)
