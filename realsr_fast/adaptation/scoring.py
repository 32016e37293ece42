"""Scores outside the Trainer: the starting model chosen on validation photos, and the final
comparison (bicubic / official / Real-ESRGAN / adapted) on the test photos, never used for a choice.

Pairs are made as the Trainer makes its validation pairs (`train.batches.validation_set`: centre crop
of `val.crop`, LR degraded once by a Degrader of the training kernels and noise seeded with
`run.seed`), so a base scored here on the validation photos scores what the Trainer's iteration 0
would give.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from realsr_fast import metrics
from realsr_fast.data.imresize import imresize
from realsr_fast.device import resolve_device
from realsr_fast.errors import RealSRError
from realsr_fast.models.loading import load_model
from realsr_fast.train.batches import ValidationImage, build_degrader, validation_set
from realsr_fast.train.config import TrainConfig

OFFICIAL = "df2k"
REALESRGAN = "realesrgan-x4plus"
#: What `--base auto` compares on the validation photos (those whose weights are installed).
AUTO_BASES = (OFFICIAL, REALESRGAN)


def make_pairs(config: TrainConfig, folder: str | os.PathLike) -> list[ValidationImage]:
    """The `(hr (1, 3, H, W) uint8, lr (1, 3, H/s, W/s) float)` pairs of `folder`'s images, made like
    the Trainer's validation pairs from `config` (its kernels, noise, crop and seed)."""
    device = resolve_device(config.run.device)
    generator = torch.Generator(device=device).manual_seed(config.run.seed)
    degrader = build_degrader(config.data, config.generator.scale, generator).to(device)
    return validation_set(str(folder), degrader, config.val.max_images, config.val.crop, device)


@torch.no_grad()
def score(upscale: Callable[[torch.Tensor], torch.Tensor], pairs: list[ValidationImage], scale: int) -> dict[str, float]:
    """Mean PSNR-Y / SSIM-Y (border = scale) and LPIPS when available of `upscale` over `pairs`;
    `upscale` maps `(1, 3, h, w)` float LR in [0, 1] to `(1, 3, s*h, s*w)` float."""
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "lpips": []}
    for pair in pairs:
        sr = upscale(pair.lr.float()).float().clamp(0, 1).mul(255).round().to(torch.uint8)
        sr_image, hr_image = (x[0].permute(1, 2, 0).cpu().numpy() for x in (sr, pair.hr))
        scores["psnr"].append(metrics.psnr(sr_image, hr_image, crop_border=scale))
        scores["ssim"].append(metrics.ssim(sr_image, hr_image, crop_border=scale))
        distance = metrics.lpips_distance(sr_image, hr_image, crop_border=scale, device=str(pair.lr.device))
        if distance is not None:
            scores["lpips"].append(distance)
    return {name: round(float(np.mean(values)), 4) for name, values in scores.items() if values}


def bicubic_upscaler(scale: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """MATLAB bicubic x`scale` of a `(1, 3, h, w)` float batch."""
    return lambda lr: imresize(lr, scale=scale)


def model_upscaler(model: str | os.PathLike, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The RRDBNet `model` (a name or a weights file) in fp32 on `device`."""
    network = load_model(model).to(device).eval()
    return lambda lr: network(lr.to(device))


def available(model: str) -> str | None:
    """None when the weights of `model` load, else why not (one line)."""
    try:
        load_model(model)
    except RealSRError as exc:
        return str(exc)
    return None


@dataclass
class BaseChoice:
    """The starting model of the fine-tune, why it was chosen, and the validation scores behind it."""

    chosen: str
    why: str
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def choose_base(base: str, config: TrainConfig, val_folder: Path) -> BaseChoice:
    """`--base`: `df2k`, `realesrgan-x4plus` or a weights file as given; `auto` scores each of
    `AUTO_BASES` whose weights load and whose shape is the generator's on the validation photos and
    keeps the best PSNR-Y (ties: the official model).

    Raises:
        RealSRError: a named base whose weights do not load or whose shape differs from the generator's.
    """
    shape = {key: getattr(config.generator, key) for key in ("nf", "nb", "gc", "scale")}

    def mismatch(name: str) -> str | None:
        model_shape = {key: value for key, value in load_model(name).config().items() if key in shape}
        return None if model_shape == shape else f"its shape {model_shape} is not the generator's {shape}"

    if base != "auto":
        why = available(base) or mismatch(base)
        if why is not None:
            raise RealSRError(f"--base {base}: {why}")
        return BaseChoice(base, "asked for with --base")
    candidates, skipped = [], {}
    for name in AUTO_BASES:
        why = available(name) or mismatch(name)
        if why is None:
            candidates.append(name)
        else:
            skipped[name] = why
    if len(candidates) == 1:
        reason = "; ".join(f"{name} not compared: {why}" for name, why in skipped.items())
        return BaseChoice(candidates[0], f"the only base available ({reason})", {}, skipped)
    device = resolve_device(config.run.device)
    pairs = make_pairs(config, val_folder)
    scores = {name: score(model_upscaler(name, device), pairs, config.generator.scale) for name in candidates}
    chosen = max(candidates, key=lambda name: (scores[name]["psnr"], name == OFFICIAL))
    listed = ", ".join(f"{name} {scores[name]['psnr']:.2f} dB" for name in candidates)
    return BaseChoice(chosen, f"best validation PSNR-Y ({listed}, {len(pairs)} photo(s))", scores, skipped)


def score_test_photos(config: TrainConfig, test_folder: Path, adapted: Path, base: str) -> tuple[dict[str, dict[str, float]], int]:
    """Scores of bicubic, the official model, Real-ESRGAN x4plus (when installed), the base when it
    is another file, and the adapted model on the test photos; and the number of photos."""
    device, scale = resolve_device(config.run.device), config.generator.scale
    pairs = make_pairs(config, test_folder)
    upscalers = {"bicubic": bicubic_upscaler(scale)}
    for name in (*AUTO_BASES, *([base] if base not in AUTO_BASES else [])):
        if available(name) is None:
            upscalers[name] = model_upscaler(name, device)
    upscalers["adapted"] = model_upscaler(adapted, device)
    return {name: score(fn, pairs, scale) for name, fn in upscalers.items()}, len(pairs)
