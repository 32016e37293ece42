"""The demo's third column: the official model fine-tuned for the sample photos' own degradation.

Whole photos are held out (`data.split.split_names`); the official DF2K weights are fine-tuned
(`train.finetune`, the PSNR preset `configs/adapt.yaml` that `realsr adapt` uses) on crops of the
other photos only, degraded on the fly with the kernels and noise the demo estimated (they describe
the camera, so they come from every photo, as in `realsr adapt`). The demo then upscales the
held-out photos' LR with it. The model kept is the last one, not the best on the held-out photos,
since those are what it is judged on.

Folder `OUT/adapt/`: `train/`, `held_out/` (the HR of whole photos), `run/config.yaml` (the
Trainer's settings; its checkpoints are deleted, as the demo never resumes), `curve.json`,
`model.safetensors`.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from realsr_fast.data.split import materialise, split_names
from realsr_fast.device import resolve_device
from realsr_fast.train.checkpoint import CHECKPOINT_DIR
from realsr_fast.train.finetune import MODEL_NAME, FineTuneSettings, fine_tune, fine_tune_config

HELD_OUT = 0.25
"""Fraction of the photos held out: one of the four samples."""


@dataclass
class AdaptedModel:
    """The fine-tuned model, which photos it was trained on and which were held out, and its run."""

    model: Path
    train: list[str]
    held_out: list[str]
    held_out_hr: Path
    """Folder of the held-out photos' HR (`<name>.png`)."""
    iterations: int
    seconds: float
    curve: list[dict[str, float]]
    """The Trainer's validation on the held-out photos: iteration 0 (the official model) and the last."""
    settings: dict[str, object]
    """HR crop side, batch, learning rate and device of the fine-tuning."""


def adapt_to_samples(out: Path, hr_dir: Path, names: Sequence[str], iterations: int, seed: int = 0,
                     device: str = "auto", progress: bool = True) -> AdaptedModel:
    """Fine-tune the official model on the photos of `hr_dir` (`<name>.png`) not held out.

    Uses the kernel bank `out/kernels` and noise bank `out/noise`; writes `out/adapt/` (replacing an
    earlier run there, so that the column always shows `iterations` fresh iterations).
    """
    train, held_out = split_names(names, HELD_OUT, seed)
    folder = out / "adapt"
    shutil.rmtree(folder, ignore_errors=True)
    materialise(hr_dir, train, folder / "train")
    materialise(hr_dir, held_out, folder / "held_out")
    config = fine_tune_config(FineTuneSettings(folder / "train", folder / "held_out", out / "kernels", out / "noise",
                                               folder / "run", "psnr", device, iterations, seed))
    config = replace(config, val=replace(config.val, every=iterations),
                     run=replace(config.run, checkpoint_every=iterations, progress=progress))
    where = resolve_device(device)
    result = fine_tune(config, folder, keep_best=False)
    shutil.rmtree(folder / "run" / CHECKPOINT_DIR, ignore_errors=True)
    settings = {"patch": config.data.patch, "batch": config.data.batch, "lr_g": config.optim.lr_g, "device": str(where)}
    return AdaptedModel(folder / MODEL_NAME, train, held_out, folder / "held_out", result.iteration, result.seconds,
                        result.curve, settings)
