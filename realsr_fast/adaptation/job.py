"""`adapt(photos, out)`: photos -> roles, HR, kernels, noise -> fine-tuned model + honest report.

Stages, each cached in OUT so that running the same command again resumes and never redoes:
1. roles by a hash of each photo's name (`split.split_roles`): training photos, validation photos
   (choose the starting model and the checkpoint) and test photos (scored once at the end, never
   used for a choice; none with 2 photos); `OUT/split/{train,val,test}/` hold their HR and
   `OUT/split/train_photos/` the training photos as given;
2. `OUT/hr/`: clean-up (MATLAB bicubic 1/2 of each photo, `data.cleanup`);
3. `OUT/kernels/`: x4 kernels of the training photos, blur families (default), KernelGAN or spectral
   (`kernelgan.estimate_kernel_folder`), or `kernels=`; `OUT/kernels_train/`: the estimates of
   training photos only (a validation or test photo's estimate is left out, whoever made it);
   `OUT/kernels_used/`: what training reads, each of those or, where its `seeds` runs disagree,
   the constant fallback kernel (`kernelgan.fallback`);
4. `OUT/noise/`: noise of the training photos (`data.noise_source`: official mining rule, the
   rule adapted to the measured noise, or a fitted noise model), or `noise=`;
5. the base (`--base`, `scoring.choose_base`), `OUT/run/` (checkpoints), `OUT/curve.json`,
   `OUT/model.safetensors` (best on the validation photos);
6. the test scores, `OUT/report.html`, `OUT/curve.png`, `OUT/summary.json`.
The validation and test LR are made with the training photos' kernels and noise (the Trainer's
Degrader), so no score reads a kernel or noise estimated on the photo it scores.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from realsr_fast.adaptation.report import FinishedRun, write_outputs
from realsr_fast.adaptation.scoring import BaseChoice, choose_base, score_test_photos
from realsr_fast.batch import refuse_output_in_sources, source_images
from realsr_fast.data.cleanup import cleanup_folder
from realsr_fast.data.jpeg import jpeg_quality_of_folder
from realsr_fast.data.kernel_bank import find_kernel_files
from realsr_fast.data.noise_bank import MANIFEST_NAME
from realsr_fast.data.noise_source import choose_noise
from realsr_fast.data.split import Roles, materialise, split_roles
from realsr_fast.errors import RealSRError
from realsr_fast.io import write_json
from realsr_fast.kernel_estimation.estimate import estimate_kernel_folder
from realsr_fast.kernel_estimation.estimators import KernelSettings
from realsr_fast.kernel_estimation.fallback import training_kernels
from realsr_fast.train.config import TrainConfig
from realsr_fast.train.finetune import MODEL_NAME, PRESETS, FineTuneResult, fine_tune, fine_tune_config

SCALE = 4
NOISE_SOURCE = "noise_source.json"  # in OUT: which source made OUT/noise (data.noise_source)


@dataclass
class AdaptResult:
    out: Path
    model: Path
    report: Path
    summary: Path
    roles: Roles
    fine_tune: FineTuneResult
    base: BaseChoice
    test: dict = field(default_factory=dict)  # summary.json's `test`: photos, scores or why there are none


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
    method: str = "families",
    noise_patch: int | None = None,
    base: str = "auto",
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
        held_out: fraction of photos kept for validation, and as many for test (at least one each
            with 3 or more photos; with 2 photos there is no test photo and no test score).
        kernels, noise: existing kernel / noise folders instead of estimating them from the photos.
        kernel_iterations: KernelGAN iterations per photo (official 3000).
        seeds: KernelGAN runs per photo; with 2 or more an estimate whose runs disagree is not
            trained on (the constant fallback kernel replaces it); with 1 trust is not checked.
        method: `families` (default: `kernelgan.families`, Gaussian, disk and motion blurs fitted to each
            photo's spectrum, JPEG-aware), `kernelgan` (the paper's) or `spectral` (`kernelgan.spectral`);
            `seeds` must be 1 except for `kernelgan`; cached kernels are reused. JPEG photos
            (`data.jpeg.jpeg_quality_of_folder`) train with the `kernel+noise+jpeg` recipe at their quality.
        noise_patch: side of the mined noise patches; None: the largest of 256/128/64/32 that
            finds enough flat patches (`data.noise_source`).
        base: starting model, `auto` (the better of df2k and realesrgan-x4plus on the validation
            photos when the latter is installed, else df2k), `df2k`, `realesrgan-x4plus` or a file.
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
    roles = split_roles(names, held_out, seed)
    out.mkdir(parents=True, exist_ok=True)

    hr = out / "hr"
    report = cleanup_folder(photos, hr, progress=progress) if clean else None
    if report is not None and report.failed:
        raise RealSRError("clean-up failed for " + "; ".join(f"{p}: {why}" for p, why in report.failed))
    hr_source = hr if clean else Path(photos)
    for role, role_names in (("train", roles.train), ("val", roles.val), ("test", roles.test)):
        materialise(hr_source, role_names, out / "split" / role)
    train_photos = out / "split" / "train_photos"
    materialise(Path(photos), roles.train, train_photos)

    if kernels is None:
        kernels = out / "kernels"
        estimation = KernelSettings(method=method, scale=SCALE, iterations=kernel_iterations, seed=seed, runs=seeds,
                                    device=device)
        summary = estimate_kernel_folder(train_photos, kernels, estimation, progress=progress)
        if summary.failed:
            raise RealSRError("kernel estimation failed for " + "; ".join(f"{n}: {why}" for n, why in summary.failed.items()))
    left_out = training_estimates(Path(kernels), roles, out / "kernels_train")
    kernel_choices = training_kernels(out / "kernels_train", out / "kernels_used", SCALE)

    noise_dir = Path(noise) if noise is not None else out / "noise"
    jpeg_quality = jpeg_quality_of_folder(source_images(train_photos, "photo"))
    if jpeg_quality is not None:  # JPEG photos: the LR is compressed last, around their quality (#28)
        overrides = ["data.recipe=kernel+noise+jpeg", f"data.jpeg_quality={jpeg_quality}", *overrides]  # --set wins
    train_config = fine_tune_config(out / "split" / "train", out / "split" / "val", out / "kernels_used", noise_dir,
                                    out / "run", mode, device, iterations, seed, config, overrides)
    if noise is None:
        noise_source = _noise(train_photos, noise_dir, out / NOISE_SOURCE, train_config, noise_patch, seed, progress)
    else:
        noise_source = {"source": "given", "description": f"given with --noise: {noise} (used as it is)"}

    if any(o.startswith("generator.init=") for o in overrides):
        init = train_config.generator.init
        base_choice = BaseChoice(str(init) if init else "none (random initialisation)", "set with --set generator.init")
    else:
        base_choice = choose_base(base, train_config, out / "split" / "val")
        train_config.generator.init = base_choice.chosen
    result = fine_tune(train_config, out, minutes)
    test = {"photos": list(roles.test)}
    if roles.test:
        scores, count = score_test_photos(train_config, out / "split" / "test", out / MODEL_NAME,
                                          str(train_config.generator.init))
        test.update(scores=scores, images=count)
    else:
        test["why"] = (f"no test score: {len(names)} photos give one to train on and one to choose the checkpoint; "
                       "3 or more photos give a test photo that no choice has seen")
    paths = write_outputs(out, FinishedRun(train_config, result, roles, base_choice, Path(kernels), kernel_choices,
                                           left_out, noise_dir, noise_source, test, minutes))
    return AdaptResult(out, out / MODEL_NAME, paths.report, paths.summary, roles, result, base_choice, test)


def training_estimates(estimates: Path, roles: Roles, target: Path) -> list[str]:
    """Copy into `target` (emptied first) the kernel estimates of `estimates` that are not named after
    a validation or test photo, keeping the layout and each `<photo>_report.json`; return the
    names left out. Kernels named after no photo (a camera's bank) are kept.

    Raises:
        RealSRError: nothing is left (every kernel belongs to a validation or test photo).
    """
    held = set(roles.val) | set(roles.test)
    shutil.rmtree(target, ignore_errors=True)
    left_out, kept = [], 0
    for path in find_kernel_files(estimates, SCALE):
        photo = path.stem.rsplit("_kernel_x", 1)[0]
        if photo in held:
            left_out.append(photo)
            continue
        copy = target / path.relative_to(estimates)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
        report = path.parent / f"{photo}_report.json"
        if report.is_file():
            shutil.copy2(report, copy.parent / report.name)
        kept += 1
    if not kept:
        raise RealSRError(f"{estimates}: every kernel belongs to a validation or test photo ({', '.join(sorted(left_out))}); "
                          "estimate kernels on the training photos, or remove --kernels")
    return sorted(left_out)


def _noise(train_photos: Path, noise_dir: Path, record: Path, config: TrainConfig, requested: int | None, seed: int,
           progress: bool) -> dict:
    """The noise folder of the training photos (`data.noise_source`), made once: its source is
    recorded in `record`, and a folder without that record (an earlier version's) is made again."""
    if record.is_file() and (noise_dir / MANIFEST_NAME).is_file():
        cached = json.loads(record.read_text(encoding="utf-8"))
        if cached.get("photos") == sorted(p.stem for p in train_photos.iterdir()):
            return cached
    scale = config.generator.scale
    needed = -(-config.data.patch // scale)
    if config.val.crop:
        needed = max(needed, -(-config.val.crop // scale))
    choice = choose_noise(train_photos, noise_dir, needed, requested, seed=seed, progress=progress)
    source = {**choice.as_dict(), "description": choice.describe(), "photos": sorted(p.stem for p in train_photos.iterdir())}
    write_json(record, source)
    return source
