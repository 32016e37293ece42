"""Fine-tuning bounded by iterations and/or wall-clock minutes, driven through the public `Trainer`.

The Trainer's own loop (`Trainer.train`, with its progress bar, checkpoints and Ctrl-C handling)
runs in chunks of `val.every` iterations; between chunks the held-out split is scored, the
learning curve (`curve.json`, the starting model at iteration 0 first) is extended and the best
generator so far is written to `model.safetensors`. A time budget shortens the last chunk from
the measured seconds per iteration. Re-running with a larger budget resumes from the checkpoint.
Used by `realsr adapt` (`adaptation/`) and by the demo's adapted column (`demo/adapted.py`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from realsr_fast.device import resolve_device
from realsr_fast.io import write_json
from realsr_fast.models.formats import save_safetensors
from realsr_fast.train import FINE_TUNE_PRESETS
from realsr_fast.train import checkpoint as ckpt
from realsr_fast.train.config import PRESET_DIR, TrainConfig, read_config, with_overrides
from realsr_fast.train.distributed import init_distributed
from realsr_fast.train.trainer import Trainer

CURVE_NAME = "curve.json"
MODEL_NAME = "model.safetensors"
#: On a GPU the paper's crop and batch (docs/METHOD.md §7) replace the preset's CPU sizes.
GPU_DATA = {"patch": 128, "batch": 16, "workers": 4}
GPU_VAL_CROP = 256
#: The recipe of JPEG photos: the LR is compressed last, around their quality (#28).
JPEG_RECIPE = "kernel+noise+jpeg"


@dataclass(frozen=True)
class FineTuneSettings:
    """What a fine-tune reads and how it trains: the training and validation HR folders, the kernel
    and noise banks, the run folder (checkpoints); the preset of `mode` (`FINE_TUNE_PRESETS`) or the `config`
    file; the device, the iteration budget (None: the preset's) and the seed; the photos' JPEG
    quality (None: not JPEG photos); and dotted `key=value` `overrides` (the user's), applied last."""

    train_hr: Path
    val_hr: Path
    kernels: str | os.PathLike
    noise: str | os.PathLike
    run_dir: Path
    mode: str = "psnr"
    device: str = "auto"
    iterations: int | None = None
    seed: int = 0
    jpeg_quality: float | None = None
    config: str | os.PathLike | None = None
    overrides: Sequence[str] = ()


@dataclass
class FineTuneResult:
    """The learning curve (one validation per row, iteration 0 = the starting model) and the best row."""

    curve: list[dict[str, float]]
    best: dict[str, float]
    iteration: int
    seconds: float
    interrupted: bool = False
    validation: list = field(default_factory=list)  # the Trainer's held-out ValidationImage pairs


def fine_tune_config(settings: FineTuneSettings) -> TrainConfig:
    """The Trainer config of a fine-tune: the preset, the folders, the paper's sizes on CUDA, the
    JPEG recipe for JPEG photos, then `settings.overrides` (last wins)."""
    preset = read_config(settings.config or PRESET_DIR / FINE_TUNE_PRESETS[settings.mode])
    data = replace(preset.data, hr=str(settings.train_hr), kernels=str(settings.kernels), noise=str(settings.noise))
    val = replace(preset.val, hr=str(settings.val_hr))
    if resolve_device(settings.device).type == "cuda":
        data, val = replace(data, **GPU_DATA), replace(val, crop=GPU_VAL_CROP)
    if settings.jpeg_quality is not None:
        data = replace(data, recipe=JPEG_RECIPE, jpeg_quality=settings.jpeg_quality)
    optim = preset.optim if settings.iterations is None else replace(preset.optim, iterations=settings.iterations)
    run = replace(preset.run, out=str(settings.run_dir), device=settings.device, seed=settings.seed)
    return with_overrides(replace(preset, data=data, val=val, optim=optim, run=run), settings.overrides)


def fine_tune(config: TrainConfig, out: Path, minutes: float | None = None, keep_best: bool = True) -> FineTuneResult:
    """Train `config` (its `run.out` holds the checkpoints) up to `optim.iterations` or `minutes` of
    training and validating (summed over resumed calls), whichever comes first; write `out/curve.json` and
    `out/model.safetensors`: the best held-out PSNR-Y so far, the starting model included, or with
    `keep_best=False` the last generator (when the held-out set is also what the model is judged on,
    choosing by it would flatter the result). Resumes where an earlier call stopped."""
    context = init_distributed(config.run.device)
    run_dir = Path(config.run.out)
    resume = run_dir if (run_dir / ckpt.CHECKPOINT_DIR / ckpt.LATEST).exists() else None
    trainer = Trainer(config, context, resume=resume)
    curve_path, model_path = out / CURVE_NAME, out / MODEL_NAME
    curve = json.loads(curve_path.read_text()) if resume is not None and curve_path.exists() else []
    curve = [row for row in curve if row["iteration"] <= trainer.iteration]
    if not curve:
        curve.append({**trainer.validate(), "seconds": 0.0})
        _save_generator(trainer, model_path, 0)
    best = max(curve, key=lambda row: row["psnr"])
    total, every = config.optim.iterations, config.val.every
    trained = curve[-1]["seconds"]
    budget = None if minutes is None else minutes * 60
    interrupted = False
    while trainer.iteration < total and (budget is None or trained < budget):
        chunk = min(every - trainer.iteration % every, total - trainer.iteration)
        done_iters = trainer.iteration - curve[0]["iteration"]
        if budget is not None and done_iters > 0:
            per_iteration = trained / done_iters
            chunk = max(1, min(chunk, int((budget - trained) / per_iteration)))
        elif budget is not None:
            chunk = min(chunk, 2)  # measure the pace before committing to a long chunk
        trainer.config.optim.iterations = trainer.iteration + chunk
        started = time.perf_counter()
        result = trainer.train()
        row = result.validations[-1] if result.validations and result.validations[-1]["iteration"] == trainer.iteration \
            else trainer.validate()
        trained += time.perf_counter() - started
        curve.append({**row, "seconds": round(trained, 2)})
        if row["psnr"] > best["psnr"]:
            best = curve[-1]
        if curve[-1] is best or not keep_best:
            _save_generator(trainer, model_path, trainer.iteration)
        write_json(curve_path, curve)
        if result.interrupted:
            interrupted = True
            break
    trainer.config.optim.iterations = total
    write_json(curve_path, curve)
    return FineTuneResult(curve, best, trainer.iteration, trained, interrupted, trainer.validation)


def _save_generator(trainer: Trainer, path: Path, iteration: int) -> None:
    generator = trainer.generator
    state = {name: value.detach().contiguous().cpu() for name, value in generator.state_dict().items()}
    save_safetensors(path, state, generator.config(), {"adapted_iteration": str(iteration)})
