"""The offline paired dataset: HR images, their LR images, and the noise bank, in Real-SR's layout.

`OUT/HR/<stem>.png`, `OUT/LR/<stem>.png` (same stem), `OUT/noise/` (the noise patches, hard
links or copies) and `OUT/manifest.json` (which kernel, file and bank index, made which LR).

Recipes (docs/METHOD.md §2):
- ``kernel`` (Track 2): one random kernel of the bank per HR image, drawn from a generator seeded
  with `seed`; LR = degrade(HR, k, scale, symmetric padding), computed in float and rounded once.
- ``bicubic`` (Track 1): LR = MATLAB imresize(HR, 1/scale), through the bicubic bank kernel.

No noise is baked into the LR: RealSR adds it at training time (section 5), from `OUT/noise`.
Both recipes run through :class:`realsr_fast.data.degrader.Degrader` (`sample` then `apply`),
the code the training uses, so the same choices give the same LR offline and on the fly.

Example:
    >>> report = build_paired_dataset("dped_hr/", "dped_pairs/", PairedSettings(kernels="kernels/", noise="noise/"))
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from realsr_fast.batch import BatchReport, refuse_output_in_sources, source_images, to_rgb8
from realsr_fast.data.degrader import DegradeChoices, Degrader
from realsr_fast.data.kernel_bank import load_kernel_bank
from realsr_fast.data.noise_bank import MANIFEST_NAME, NoiseBank, load_noise_bank
from realsr_fast.data.paired_settings import PairedSettings
from realsr_fast.data.recipes import OFFLINE_RECIPES, RECIPES
from realsr_fast.data.training_pairs import kernel_per_image
from realsr_fast.errors import RealSRError
from realsr_fast.io import atomic_write, read_image, write_image

#: The dataset's own manifest (scale, recipe, seed, kernels, noise folder, pairs).
PAIRS_MANIFEST = "manifest.json"


@dataclass
class PairedReport(BatchReport):
    """A :class:`BatchReport` plus the manifest's pair entries and the number of noise patches."""

    pairs: list[dict] = field(default_factory=list)
    noise_patches: int = 0


def degrade_image(image: np.ndarray, degrader: Degrader, choices: DegradeChoices) -> tuple[np.ndarray, np.ndarray]:
    """One HR image -> `(hr, lr)` uint8 arrays.

    Args:
        image: `(H, W, C)` uint8/uint16 HR image (made RGB 8-bit, then cropped at the bottom and
            right to a multiple of the scale).
        degrader: applies `choices` (a batch of one).

    Returns:
        `(H', W', 3)` HR and `(H'/s, W'/s, 3)` LR, both uint8.
    """
    hr = to_rgb8(image)
    scale = degrader.scale
    height, width = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    if height == 0 or width == 0:
        raise RealSRError(f"a {hr.shape[0]}x{hr.shape[1]} image is smaller than the scale {scale}")
    hr = np.ascontiguousarray(hr[:height, :width])
    lr = degrader.apply(torch.from_numpy(hr).permute(2, 0, 1)[None], choices, out_dtype=torch.uint8)
    return hr, lr[0].permute(1, 2, 0).numpy()


def build_paired_dataset(hr_dir: str | os.PathLike, output: str | os.PathLike, settings: PairedSettings = PairedSettings(),
                         *, overwrite: bool = False, progress: bool = True) -> PairedReport:
    """Write the paired dataset of the HR images in `hr_dir` into `output` (module docstring), made
    as `settings` says.

    Every HR image gets its kernel from one draw over the sorted file list, so a re-run with the
    same seed makes the same choices; pairs whose two files exist are skipped unless `overwrite`.
    Unreadable images are reported in the returned report and the others still processed.

    Raises:
        RealSRError: for an unknown recipe, a missing or empty HR, kernel or noise folder, a bad
            kernel (wrong size for the scale...), or an output folder that is a source folder.
    """
    images = _check_sources(hr_dir, output, settings)
    uses_kernels = RECIPES[settings.recipe].kernels
    bank = load_kernel_bank(settings.kernels, settings.scale) if uses_kernels else None
    report = PairedReport("paired")
    if not uses_kernels and settings.kernels is not None:
        report.notes.append(f"the {settings.recipe} recipe uses no kernels; the kernel folder was not read")
    noise = load_noise_bank(settings.noise) if settings.noise is not None else None
    degrader = Degrader(bank, None, scale=settings.scale, recipe=settings.recipe)
    choices = DegradeChoices(kernel_per_image(len(images), len(degrader.kernels), settings.seed))  # as training's per_image

    kernel_files = [str(path) for path in bank.files] if bank else ["bicubic"]
    output = Path(output)
    for i, path in enumerate(tqdm(images, desc="dataset", unit="image", disable=not progress)):
        if _write_pair(path, output, degrader, choices.select(i), overwrite, report):
            index = int(choices.kernel_index[i])
            report.pairs.append({"hr": f"HR/{path.stem}.png", "lr": f"LR/{path.stem}.png", "source": str(path),
                                 "kernel_index": index, "kernel_file": kernel_files[index]})
    if noise is not None:
        report.noise_patches = _link_noise(noise, Path(settings.noise), output / "noise")
    else:
        report.notes.append("no noise folder given (--noise): training with the 'kernel+noise' recipe will need one")
    manifest = {"scale": settings.scale, "recipe": settings.recipe, "seed": settings.seed, "kernels": kernel_files,
                "noise": str(settings.noise) if settings.noise is not None else None, "pairs": report.pairs}
    output.mkdir(parents=True, exist_ok=True)
    with atomic_write(output / PAIRS_MANIFEST, "w") as file:
        json.dump(manifest, file, indent=1)
    return report


def _check_sources(hr_dir: str | os.PathLike, output: str | os.PathLike, settings: PairedSettings) -> list[Path]:
    """The HR images of `hr_dir`, once the recipe and its folders are known usable and `output`
    (with its HR/, LR/ and noise/) is no source folder; RealSRError otherwise."""
    if settings.recipe not in OFFLINE_RECIPES:
        raise RealSRError(f"unknown offline recipe {settings.recipe!r}; choose one of {', '.join(OFFLINE_RECIPES)} "
                          "(noise is added at training time)")
    if RECIPES[settings.recipe].kernels and settings.kernels is None:
        raise RealSRError(f"the {settings.recipe!r} recipe needs a kernel folder (--kernels), made by `realsr kernels`")
    images = source_images(hr_dir, "HR image")
    sources = [d for d in (hr_dir, settings.kernels, settings.noise) if d is not None]
    for target in (output, *(Path(output) / sub for sub in ("HR", "LR", "noise"))):
        refuse_output_in_sources(target, sources)
    return images


def _write_pair(path: Path, output: Path, degrader: Degrader, choice: DegradeChoices, overwrite: bool,
                report: PairedReport) -> bool:
    """Write the HR image `path` and its LR (made with `choice`) into `output` unless both exist and
    not `overwrite`; record it in `report` as done, skipped or failed. False when it failed."""
    hr_path, lr_path = output / "HR" / f"{path.stem}.png", output / "LR" / f"{path.stem}.png"
    if hr_path.exists() and lr_path.exists() and not overwrite:
        report.skipped.append(path)
        return True
    try:
        hr, lr = degrade_image(read_image(path), degrader, choice)
    except RealSRError as exc:
        report.fail(path, exc)
        return False
    write_image(hr_path, hr)
    write_image(lr_path, lr)
    report.done.append(path)
    return True


def _link_noise(noise: NoiseBank, source: Path, target: Path) -> int:
    """Hard-link (or copy, across file systems) the bank's patches and manifest into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    files = list(noise.files)
    if (source / MANIFEST_NAME).is_file():
        files.append(source / MANIFEST_NAME)
    for path in files:
        destination = target / path.name
        if destination.exists():
            continue
        try:
            os.link(path, destination)
        except OSError:
            with open(path, "rb") as src, atomic_write(destination) as dst:
                shutil.copyfileobj(src, dst)
    return len(noise.files)
