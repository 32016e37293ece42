"""Kernel estimation for images and for folders of photos (the `realsr kernels` job).

`estimate_kernels` runs KernelGAN on images held in memory (all in one batched training), or the
spectral estimator (`spectral`, one photo at a time, no training);
`kernels` does a folder: resumable, one failure never stops the rest, under `torchrun` each
rank takes every WORLD_SIZE-th image, and a `report.json` and a `kernels.png` sheet cover
everything the output folder holds.
"""
from __future__ import annotations

import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence, get_args

import numpy as np
import torch
from tqdm import tqdm

from realsr_fast.batch import refuse_output_in_sources, source_images
from realsr_fast.data.jpeg import luminance_table
from realsr_fast.data.kernel_files import kernel_paths, load_kernel, save_kernel, write_sheet
from realsr_fast.device import resolve_device, torchrun_ranks
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image, write_json
from realsr_fast.kernel_estimation.confidence import TRUSTED_DB, kernel_agreement_db
from realsr_fast.kernel_estimation.families import estimate_families
from realsr_fast.kernel_estimation.kernelgan.constraints import LAMBDA_BICUBIC_START
from realsr_fast.kernel_estimation.kernelgan.crops import prepare_image
from realsr_fast.kernel_estimation.kernelgan.networks import GForm
from realsr_fast.kernel_estimation.kernelgan.training import ITERATIONS, Prior, train_kernelgan
from realsr_fast.kernel_estimation.postprocess import analytic_x4, post_process
from realsr_fast.kernel_estimation.quality import kernel_report, most_consistent
from realsr_fast.kernel_estimation.spectral import estimate_blur

Method = Literal["kernelgan", "spectral", "families"]
"""How kernels are estimated: KernelGAN (the paper's), the spectral maximum-likelihood Gaussian fit, or the
spectral fit over the Gaussian, defocus-disk and motion families (`kernelgan.families`)."""
METHODS: tuple[str, ...] = get_args(Method)
REPORT_NAME = "report.json"
SHEET_NAME = "kernels.png"


@dataclass
class Estimate:
    """One image's estimated kernels and their report."""

    kernel_x2: np.ndarray
    """`(17, 17)` float64."""
    kernel_x4: np.ndarray | None
    """`(33, 33)` float64 at scale 4, else None."""
    report: dict


def image_seed(seed: int, name: str, run: int = 0) -> int:
    """The seed of one image's run: fixed by (seed, name, run), whatever batch or order it is in."""
    return zlib.crc32(f"{seed}/{run}/{name}".encode()) & 0x7FFFFFFF


def estimate_kernels(
    images: Sequence[np.ndarray],
    names: Sequence[str],
    scale: int = 2,
    iterations: int = ITERATIONS,
    seed: int = 0,
    runs: int = 1,
    form: GForm = "collapsed",
    device: torch.device | str = "cpu",
    on_iteration: Callable[[int], None] | None = None,
    prior: Prior = "none",
    bicubic_weight: float = LAMBDA_BICUBIC_START,
    method: Method = "kernelgan",
    jpeg_tables: Sequence[np.ndarray | None] | None = None,
) -> list[Estimate]:
    """Estimate each image's kernel with KernelGAN, all images (and runs) trained together, or spectrally.

    Args:
        images: `(H, W, C)` uint8/uint16 arrays as `realsr_fast.io.read_image` gives; at least
            84x84 (RealSRError otherwise).
        names: one name per image; with `seed` it fixes the image's random choices.
        scale: 2, or 4 for the analytic x4 kernel as well.
        iterations: KernelGAN iterations (official 3000).
        seed: base seed.
        runs: estimates per image; the most consistent one (medoid) is kept and the spread reported.
        form: "collapsed" (fast) or "literal" (the official deep generator).
        device: training device.
        on_iteration: progress callback, called after every iteration.
        prior: "none" (official KernelGAN) or "fkp" (the generator's kernel is decoded by the
            flow prior; no negligible-value zeroing in post-processing: the kernel is smooth).
        method: "kernelgan" (the arguments above apply) or "spectral" (`kernelgan.spectral`: a
            Gaussian fitted to the photo's power spectrum; deterministic, so `runs` must be 1,
            and `iterations`, `form`, `bicubic_weight` and `device` do not apply).

    With `runs >= 2` the report has `seed_agreement_db` (worst pairwise PSNR between the
    runs' re-syntheses of the image) and `trusted` (agreement >= `TRUSTED_DB`); see `confidence`.
    The spectral method's report has `half_agreement_db` (the same measure between the fits to
    two halves of the photo) and `trusted` from it. The families method (`kernelgan.families`) takes
    `jpeg_tables` (each image's `(8, 8)` luminance quantisation table when it was a JPEG, else None) and
    reports the chosen family, its parameters, `misfit` and `trusted` from it.
    """
    if scale not in (2, 4):
        raise RealSRError(f"kernels are estimated at x2 (and x4 from them): --scale must be 2 or 4, not {scale}")
    check_method(method, runs, prior)
    prepared = [prepare_image(im) for im in images]
    if method == "spectral":
        return [_spectral_estimate(image, scale, on_iteration) for image in prepared]
    if method == "families":
        tables = list(jpeg_tables) if jpeg_tables is not None else [None] * len(prepared)
        return [_families_estimate(image, table, scale, on_iteration) for image, table in zip(prepared, tables)]
    seeds = [image_seed(seed, name, run) for name in names for run in range(runs)]
    result = train_kernelgan(
        [im for im in prepared for _ in range(runs)], seeds, iterations, form, device, on_iteration, prior=prior,
        bicubic_weight=bicubic_weight,
    )
    estimates = []
    for index in range(len(images)):
        picks = range(index * runs, (index + 1) * runs)
        processed = [post_process(result.kernels[i].numpy(), zeroize=prior == "none") for i in picks]
        best, spread = most_consistent([p.kernel for p in processed])
        chosen = processed[best]
        report = kernel_report(chosen.kernel, chosen.shift, result.constrained[picks[best]], scale)
        report.update(runs=runs, run_spread_l1=spread, cut_mass=chosen.cut_mass, iterations=iterations, prior=prior,
                      bicubic_weight=bicubic_weight)
        if runs > 1:
            agreement = kernel_agreement_db(prepared[index], [p.kernel for p in processed])
            report.update(seed_agreement_db=agreement, trusted=agreement >= TRUSTED_DB)
        kernel_x4 = analytic_x4(chosen.kernel) if scale == 4 else None
        estimates.append(Estimate(kernel_x2=chosen.kernel, kernel_x4=kernel_x4, report=report))
    return estimates


def check_method(method: str, runs: int, prior: str) -> None:
    """Raise RealSRError for an unknown method, `runs` < 1, or KernelGAN's options with the spectral method."""
    if runs < 1:
        raise RealSRError(f"--seeds must be at least 1, got {runs}")
    if method not in METHODS:
        raise RealSRError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    if method != "kernelgan" and (runs != 1 or prior != "none"):
        raise RealSRError(f"--seeds and --prior belong to KernelGAN; --method {method} is deterministic and "
                          "checks itself (half_agreement_db or misfit and trusted in the report)")


def _families_estimate(image: np.ndarray, table: np.ndarray | None, scale: int,
                       on_done: Callable[[int], None] | None) -> Estimate:
    found = estimate_families(image, table)
    report = kernel_report(found.kernel, (0.0, 0.0), True, scale)
    report.update(method="families", family=found.chosen.family, fit_params=list(found.chosen.params),
                  used_params=list(found.used.params), log_size_sd=found.chosen.log_size_sd,
                  spectrum_slope=found.chosen.slope, misfit=found.chosen.misfit, trusted=found.trusted,
                  family_agreement_db=found.extra["family_agreement_db"],
                  jpeg=table is not None, bic={name: fit.bic for name, fit in found.fits.items()})
    if on_done is not None:
        on_done(1)
    kernel_x4 = analytic_x4(found.kernel) if scale == 4 else None
    return Estimate(kernel_x2=found.kernel, kernel_x4=kernel_x4, report=report)


def _spectral_estimate(image: np.ndarray, scale: int, on_done: Callable[[int], None] | None) -> Estimate:
    spectral = estimate_blur(image)
    report = kernel_report(spectral.kernel, (0.0, 0.0), True, scale)
    fit = spectral.fit
    report.update(method="spectral", fit_sigma_major_px=fit.sigma_major, fit_sigma_minor_px=fit.sigma_minor,
                  angle_deg=float(np.degrees(fit.angle)), spectrum_slope=fit.slope,
                  half_agreement_db=spectral.half_agreement_db, trusted=spectral.half_agreement_db >= TRUSTED_DB)
    if on_done is not None:
        on_done(1)
    kernel_x4 = analytic_x4(spectral.kernel) if scale == 4 else None
    return Estimate(kernel_x2=spectral.kernel, kernel_x4=kernel_x4, report=report)


@dataclass
class KernelsSummary:
    """What a folder run did."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _rank_share(files: list[Path]) -> list[Path]:
    rank, world, _ = torchrun_ranks()
    return files[rank::world]


def _report_path(out_dir: Path, stem: str) -> Path:
    return out_dir / stem / f"{stem}_report.json"


def _is_done(out_dir: Path, stem: str, scale: int) -> bool:
    paths = list(kernel_paths(out_dir, stem, scale).values()) + [_report_path(out_dir, stem)]
    return all(p.is_file() for p in paths)


def _write_estimate(out_dir: Path, stem: str, source: Path, estimate: Estimate, scale: int) -> None:
    paths = kernel_paths(out_dir, stem, scale)
    save_kernel(paths["mat2"], paths["npy2"], estimate.kernel_x2)
    if estimate.kernel_x4 is not None:
        save_kernel(paths["mat4"], paths["npy4"], estimate.kernel_x4)
    write_json(_report_path(out_dir, stem), {"image": str(source), **estimate.report})  # last: marks it done


def _write_overview(out_dir: Path) -> None:
    """`report.json` and `kernels.png` over every image whose results the output folder holds."""
    import json

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
    scale: int = 2,
    iterations: int = ITERATIONS,
    seed: int = 0,
    runs: int = 1,
    batch: int = 16,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    form: GForm = "collapsed",
    prior: Prior = "none",
    bicubic_weight: float = LAMBDA_BICUBIC_START,
    method: Method = "kernelgan",
) -> KernelsSummary:
    """Estimate the kernel of every image in `input_dir` into `out_dir` (see module docstring).

    `batch` images (times `runs`) train together. Existing results are skipped unless
    `overwrite`; unreadable or too small images are reported and skipped.
    `method` as in `estimate_kernels` (the progress bar counts iterations for KernelGAN, images
    for the spectral method).
    """
    if batch < 1:
        raise RealSRError(f"--batch must be at least 1, got {batch}")
    if iterations < 1:
        raise RealSRError(f"--kernel-iters must be at least 1, got {iterations}")
    check_method(method, runs, prior)
    torch_device = resolve_device(device)
    out = Path(out_dir)
    refuse_output_in_sources(out, [input_dir])
    files = _rank_share(source_images(input_dir, "photo"))
    summary = KernelsSummary()
    todo = []
    for path in files:
        if not overwrite and _is_done(out, path.stem, scale):
            summary.skipped.append(path.stem)
        else:
            todo.append(path)
    group_size = batch if method == "kernelgan" else 1  # spectral: each photo written as soon as it is done
    batches = [todo[i : i + group_size] for i in range(0, len(todo), group_size)]
    steps = iterations if method == "kernelgan" else None  # per batch; None: one per image
    bar = tqdm(total=sum(steps or len(group) for group in batches), unit="it" if steps else "image",
               disable=not progress or not batches, desc="kernels")
    for group in batches:
        images, names, sources, tables = [], [], [], []
        for path in group:
            try:
                image = read_image(path)
                prepare_image(image)  # size check before the batch starts
            except RealSRError as exc:
                summary.failed[path.stem] = str(exc)
                tqdm.write(f"realsr kernels: skipped {path}: {exc}", file=sys.stderr)
                if steps is None:
                    bar.update(1)
                continue
            images.append(image)
            names.append(path.stem)
            sources.append(path)
            tables.append(luminance_table(path) if method == "families" else None)
        if not images:
            bar.update(steps or 0)
            continue
        try:
            estimates = estimate_kernels(
                images, names, scale, iterations, seed, runs, form, torch_device,
                on_iteration=lambda _: bar.update(1), prior=prior, bicubic_weight=bicubic_weight, method=method,
                jpeg_tables=tables,
            )
        except RealSRError as exc:  # e.g. a flat photo: the rest go on
            bar.update(0 if steps else len(images))
            for name, source in zip(names, sources):
                summary.failed[name] = str(exc)
                tqdm.write(f"realsr kernels: failed {source}: {exc}", file=sys.stderr)
            continue
        for name, source, estimate in zip(names, sources, estimates):
            _write_estimate(out, name, source, estimate, scale)
            summary.done.append(name)
            if estimate.report["flags"]:
                tqdm.write(f"realsr kernels: {name}: {', '.join(estimate.report['flags'])}", file=sys.stderr)
    bar.close()
    if summary.done or summary.skipped:
        _write_overview(out)
    return summary
