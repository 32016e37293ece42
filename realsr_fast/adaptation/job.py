"""`adapt(photos, out, settings)`: photos -> roles, HR, kernels, noise -> fine-tuned model + honest report.

Stages, each cached in OUT so that running the same command again resumes and never redoes:
1. roles by a hash of each photo's name (`split.split_roles`): training photos, validation photos
   (choose the starting model and the checkpoint) and test photos (scored once at the end, never
   used for a choice; none with 2 photos); `OUT/split/{train,val,test}/` hold their HR and
   `OUT/split/train_photos/` the training photos as given;
2. `OUT/hr/`: clean-up (MATLAB bicubic 1/2 of each photo, `data.cleanup`);
3. `OUT/kernels/`: x4 kernels of the training photos, blur families (default), KernelGAN or spectral
   (`kernel_estimation.estimate_kernel_folder`), or a folder given (`settings.kernels.folder`);
   `OUT/kernels_train/`: the estimates of training photos only (a validation or test photo's
   estimate is left out, whoever made it);
   `OUT/kernels_used/`: what training reads, each of those or, where its `seeds` runs disagree,
   the constant fallback kernel (`kernel_estimation.fallback`);
4. `OUT/noise/`: noise of the training photos (`data.noise_source`: official mining rule, the
   rule adapted to the measured noise, or a fitted noise model), or a folder given
   (`settings.noise.folder`);
5. the base (`settings.base`, `scoring.choose_base`), `OUT/run/` (checkpoints), `OUT/curve.json`,
   `OUT/model.safetensors` (best on the validation photos);
6. the test scores, `OUT/report.html`, `OUT/curve.png`, `OUT/summary.json`.
The validation and test LR are made with the training photos' kernels and noise (the Trainer's
Degrader), so no score reads a kernel or noise estimated on the photo it scores.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from realsr_fast.adaptation.report import FinishedRun, write_outputs
from realsr_fast.adaptation.scoring import BaseChoice, choose_base, score_test_photos
from realsr_fast.adaptation.settings import AdaptSettings, AdaptTraining
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
from realsr_fast.train import FINE_TUNE_PRESETS
from realsr_fast.train.config import TrainConfig
from realsr_fast.train.finetune import MODEL_NAME, FineTuneResult, FineTuneSettings, fine_tune, fine_tune_config

SCALE = 4
NOISE_SOURCE = "noise_source.json"  # in OUT: which source made OUT/noise (data.noise_source)


@dataclass
class AdaptResult:
    """What `adapt` made in `out`: the model, the report and summary files, the photos' roles, the
    fine-tune's curve, the starting model chosen and summary.json's `test` (photos, scores or why
    there are none)."""

    out: Path
    model: Path
    report: Path
    summary: Path
    roles: Roles
    fine_tune: FineTuneResult
    base: BaseChoice
    test: dict = field(default_factory=dict)


def adapt(photos: str | os.PathLike, out: str | os.PathLike, settings: AdaptSettings = AdaptSettings()) -> AdaptResult:
    """Fine-tune the official DF2K model for the camera of the photos in the folder `photos` (never
    written) into the folder `out` (running again with the same one resumes), as `settings` says;
    the stages are in the module docstring. JPEG photos (`data.jpeg.jpeg_quality_of_folder`) train
    with the `kernel+noise+jpeg` recipe at their quality.

    Raises:
        RealSRError: unusable photos or settings, no noise patch found, missing weights.
    """
    _check(settings.training)
    out = Path(out)
    refuse_output_in_sources(out, [photos])
    names = [path.stem for path in source_images(photos, "photo")]
    roles = split_roles(names, settings.held_out, settings.seed)
    out.mkdir(parents=True, exist_ok=True)
    train_photos = _split_photos(Path(photos), out, roles, settings)

    kernels = _kernels(train_photos, out, settings)
    left_out = training_estimates(kernels, roles, out / "kernels_train")
    kernel_choices = training_kernels(out / "kernels_train", out / "kernels_used", SCALE)

    noise_dir = Path(settings.noise.folder) if settings.noise.folder is not None else out / "noise"
    training = settings.training
    jpeg_quality = jpeg_quality_of_folder(source_images(train_photos, "photo"))
    train_config = fine_tune_config(FineTuneSettings(
        out / "split" / "train", out / "split" / "val", out / "kernels_used", noise_dir, out / "run", training.mode,
        settings.device, training.iterations, settings.seed, jpeg_quality, training.config, training.overrides))
    noise_source = _noise(train_photos, out, train_config, settings)

    train_config, base_choice = _base(train_config, out, settings)
    minutes = training.minutes
    result = fine_tune(train_config, out, minutes)
    test = _test(roles, len(names), train_config, out)
    paths = write_outputs(out, FinishedRun(train_config, result, roles, base_choice, kernels, kernel_choices,
                                           left_out, noise_dir, noise_source, test, minutes))
    return AdaptResult(out, out / MODEL_NAME, paths.report, paths.summary, roles, result, base_choice, test)


def _check(training: AdaptTraining) -> None:
    """RealSRError for a mode without a preset or a time budget that is not positive."""
    if training.mode not in FINE_TUNE_PRESETS:
        raise RealSRError(f"--mode must be one of {', '.join(FINE_TUNE_PRESETS)}, got {training.mode!r}")
    if training.minutes is not None and training.minutes <= 0:
        raise RealSRError(f"--minutes must be more than 0, got {training.minutes}")


def _split_photos(photos: Path, out: Path, roles: Roles, settings: AdaptSettings) -> Path:
    """Stages 1 and 2: the HR of each role in `OUT/split/<role>/` (cleaned up into `OUT/hr/` first,
    unless `settings.clean` is off), and the training photos as given; returns the folder of those."""
    hr = out / "hr"
    if settings.clean:
        report = cleanup_folder(photos, hr, progress=settings.progress)
        if report.failed:
            raise RealSRError("clean-up failed for " + "; ".join(f"{p}: {why}" for p, why in report.failed))
    hr_source = hr if settings.clean else photos
    for role, role_names in (("train", roles.train), ("val", roles.val), ("test", roles.test)):
        materialise(hr_source, role_names, out / "split" / role)
    train_photos = out / "split" / "train_photos"
    materialise(photos, roles.train, train_photos)
    return train_photos


def _kernels(train_photos: Path, out: Path, settings: AdaptSettings) -> Path:
    """Stage 3's estimates: the folder given, or `OUT/kernels/` estimated from the training photos."""
    if settings.kernels.folder is not None:
        return Path(settings.kernels.folder)
    kernels, chosen = out / "kernels", settings.kernels
    estimation = KernelSettings(method=chosen.method, scale=SCALE, iterations=chosen.iterations, seed=settings.seed,
                                runs=chosen.seeds, device=settings.device)
    summary = estimate_kernel_folder(train_photos, kernels, estimation, progress=settings.progress)
    if not summary.ok:
        raise RealSRError("kernel estimation failed for " + "; ".join(why for _, why in summary.failed))
    return kernels


def _base(config: TrainConfig, out: Path, settings: AdaptSettings) -> tuple[TrainConfig, BaseChoice]:
    """Stage 5's starting model: `generator.init` when `--set` gives it, else `settings.base` as
    chosen on the validation photos; returns `config` starting from it, and the choice."""
    if any(o.startswith("generator.init=") for o in settings.training.overrides):
        init = config.generator.init
        return config, BaseChoice(str(init) if init else "none (random initialisation)", "set with --set generator.init")
    choice = choose_base(settings.base, config, out / "split" / "val")
    return replace(config, generator=replace(config.generator, init=choice.chosen)), choice


def _test(roles: Roles, photos: int, config: TrainConfig, out: Path) -> dict:
    """Stage 6's summary.json `test`: the test photos and their scores per model, or why there are
    none (`photos` in all)."""
    test: dict = {"photos": list(roles.test)}
    if roles.test:
        scores, count = score_test_photos(config, out / "split" / "test", out / MODEL_NAME, str(config.generator.init))
        test.update(scores=scores, images=count)
    else:
        test["why"] = (f"no test score: {photos} photos give one to train on and one to choose the checkpoint; "
                       "3 or more photos give a test photo that no choice has seen")
    return test


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


def _noise(train_photos: Path, out: Path, config: TrainConfig, settings: AdaptSettings) -> dict:
    """Stage 4: what made the noise folder, the one given or `OUT/noise/` of the training photos
    (`data.noise_source`), made once: its source is recorded in `OUT/noise_source.json`, and a
    folder without that record (an earlier version's) is made again."""
    if settings.noise.folder is not None:
        return {"source": "given", "description": f"given with --noise: {settings.noise.folder} (used as it is)"}
    noise_dir, record = out / "noise", out / NOISE_SOURCE
    photos = sorted(p.stem for p in train_photos.iterdir())
    if record.is_file() and (noise_dir / MANIFEST_NAME).is_file():
        cached = json.loads(record.read_text(encoding="utf-8"))
        if cached.get("photos") == photos:
            return cached
    scale = config.generator.scale
    needed = -(-config.data.patch // scale)
    if config.val.crop:
        needed = max(needed, -(-config.val.crop // scale))
    choice = choose_noise(train_photos, noise_dir, needed, settings.noise.patch, seed=settings.seed,
                          progress=settings.progress)
    source = {**choice.as_dict(), "description": choice.describe(), "photos": photos}
    write_json(record, source)
    return source
