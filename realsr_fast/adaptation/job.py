"""`adapt(photos, out)`: photos -> HR, kernels, noise, held-out split -> fine-tuned model + report.

Stages, each cached in OUT so that running the same command again resumes and never redoes:
1. `OUT/hr/`: clean-up (MATLAB bicubic 1/2 of each photo, `data.cleanup`);
2. `OUT/kernels/`: x4 kernels of the photos, KernelGAN or spectral (`kernelgan.estimate_kernel_folder`), or `kernels=`;
   `OUT/kernels_used/`: what training reads, each estimate or, where its `seeds` runs disagree
   (untrusted; for the spectral method: its two halves disagree), the constant fallback kernel (`kernelgan.fallback`);
3. `OUT/noise/`: noise patches mined from the photos (`data.noise_mining`), or `noise=`;
4. `OUT/split/train/`, `OUT/split/val/`: the HR of whole photos, split by `split.split_names`;
5. `OUT/run/`: the Trainer's run folder (checkpoints), `OUT/curve.json`, `OUT/model.safetensors`;
6. `OUT/report.html`, `OUT/curve.png`, `OUT/summary.json`.
The kernels and noise describe the camera, so they come from every photo; the split keeps the
held-out photos' content out of training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from realsr_fast.adaptation.report import write_outputs
from realsr_fast.batch import refuse_output_in_sources, source_images
from realsr_fast.data.cleanup import cleanup_folder
from realsr_fast.data.noise_bank import MANIFEST_NAME
from realsr_fast.data.noise_mining import NoiseSettings, mine_noise_folder
from realsr_fast.data.split import materialise, split_names
from realsr_fast.errors import RealSRError
from realsr_fast.kernelgan.estimate import Method, estimate_kernel_folder
from realsr_fast.kernelgan.fallback import training_kernels
from realsr_fast.kernelgan.training import Prior
from realsr_fast.train.finetune import PRESETS, FineTuneResult, fine_tune, fine_tune_config

SCALE = 4


@dataclass
class AdaptResult:
    out: Path
    model: Path
    report: Path
    summary: Path
    train: list[str]
    held_out: list[str]
    fine_tune: FineTuneResult


def adapt(
    photos: str | os.PathLike,
    out: str | os.PathLike,
    mode: str = "psnr",
    minutes: float | None = None,
    iterations: int | None = None,
    held_out: float = 0.2,
    kernels: str | os.PathLike | None = None,
    noise: str | os.PathLike | None = None,
    kernel_iterations: int = 3000,
    seeds: int = 1,
    prior: Prior = "none",
    method: Method = "kernelgan",
    noise_patch: int = 256,
    device: str = "auto",
    seed: int = 0,
    config: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    clean: bool = True,
    progress: bool = True,
) -> AdaptResult:
    """Fine-tune the official DF2K model for the camera of `photos` (module docstring).

    Args:
        photos: folder of one camera's photos (never written).
        out: output folder; running again with the same one resumes.
        mode: `psnr` (L1 alone) or `gan` (L1 + VGG + RaGAN, the paper's weights).
        minutes: wall-clock budget of training + validation, summed over resumed runs.
        iterations: iteration budget (default: the preset's `optim.iterations`).
        held_out: fraction of photos kept for validation (at least one).
        kernels, noise: existing kernel / noise folders instead of estimating them from the photos.
        kernel_iterations: KernelGAN iterations per photo (official 3000).
        seeds: KernelGAN runs per photo; with 2 or more an estimate whose runs disagree is not
            trained on (the constant fallback kernel replaces it); with 1 trust is not checked.
        prior: KernelGAN's kernel parameterisation, `none` (official) or `fkp` (flow prior);
            kernels already estimated in `out` are reused whichever prior made them.
        method: `kernelgan` (the paper's) or `spectral` (`kernelgan.spectral`; `seeds` must be 1,
            the estimate checks itself on two halves of each photo); cached kernels are reused.
        noise_patch: side of the mined noise patches (RealSR: 256; smaller for small photos).
        device: `auto`, `cpu` or `cuda`.
        config: a preset other than `configs/adapt*.yaml`; `overrides`: dotted `key=value` on top.
        clean: False when `photos` already are clean HR images (skips the 1/2 clean-up).

    Raises:
        RealSRError: unusable photos or settings, no noise patch found, missing weights.
    """
    if mode not in PRESETS:
        raise RealSRError(f"--mode must be one of {', '.join(PRESETS)}, got {mode!r}")
    if minutes is not None and minutes <= 0:
        raise RealSRError(f"--minutes must be more than 0, got {minutes}")
    out = Path(out)
    refuse_output_in_sources(out, [photos])
    names = [path.stem for path in source_images(photos, "photo")]
    train_names, val_names = split_names(names, held_out, seed)
    out.mkdir(parents=True, exist_ok=True)

    hr = out / "hr"
    report = cleanup_folder(photos, hr, progress=progress) if clean else None
    if report is not None and report.failed:
        raise RealSRError("clean-up failed for " + "; ".join(f"{p}: {why}" for p, why in report.failed))
    hr_source = hr if clean else Path(photos)
    materialise(hr_source, train_names, out / "split" / "train")
    materialise(hr_source, val_names, out / "split" / "val")

    if kernels is None:
        kernels = out / "kernels"
        summary = estimate_kernel_folder(photos, kernels, scale=SCALE, iterations=kernel_iterations, seed=seed,
                                         runs=seeds, device=device, progress=progress, prior=prior,
                                         method=method)
        if summary.failed:
            raise RealSRError("kernel estimation failed for " + "; ".join(f"{n}: {why}" for n, why in summary.failed.items()))
    if noise is None:
        noise = out / "noise"
        if not (noise / MANIFEST_NAME).exists():
            mined = mine_noise_folder(photos, noise, NoiseSettings(patch=noise_patch, stride=noise_patch), progress=progress)
            if not mined.patches:
                (noise / MANIFEST_NAME).unlink(missing_ok=True)
                raise RealSRError(f"no flat noise patch found in {photos}: {mined.hint}; try a smaller --noise-patch "
                                  "or pass --noise NOISE_DIR")

    kernel_choices = training_kernels(kernels, out / "kernels_used", SCALE)
    train_config = fine_tune_config(out / "split" / "train", out / "split" / "val", out / "kernels_used", noise,
                                    out / "run", mode, device, iterations, seed, config, overrides)
    result = fine_tune(train_config, out, minutes)
    paths = write_outputs(out, train_config, result, train_names, val_names, kernel_choices, Path(kernels), Path(noise),
                          minutes)
    return AdaptResult(out, out / "model.safetensors", paths.report, paths.summary, train_names, val_names, result)
