"""`realsr demo`: the whole RealSR pipeline on the bundled sample photos, with an HTML report.

Stages, each timed (docs/METHOD.md §1):

1. noise: flat patches of the samples (:data:`NOISE_SETTINGS`: 32 px patches instead of 256,
   since the samples are 128 px; RealSR's variance threshold 20); first, as it fails fast;
2. kernels: KernelGAN on every sample, batched (the official iterations by default, fewer with
   `iterations`), x2 kernels and the analytic x4 ones;
3. pairs: HR = the sample (already small and clean, so the 1/2 clean-up is skipped) and one LR
   per recipe of :data:`LR_RECIPES` (:class:`realsr_fast.data.degrader.Degrader`): the paper's
   (HR * k)↓4 + n with a random estimated kernel and a random real-noise crop, and bicubic↓4 + n,
   the degradation the released DF2K model was trained on;
4. upscale: the LR images x4 with the official RealSR DF2K model and with MATLAB bicubic;
5. adapt (unless `adapt_iterations` is 0): the official model fine-tuned on the photos not held
   out (:mod:`realsr_fast.demo.adapted`), then the held-out photos' kernel+noise LR x4 with it;
6. metrics: PSNR / SSIM (Y, crop 4) and LPIPS when available, against the HR.

Output folder: `noise/`, `kernels/`, `pairs/HR`, `pairs/LR_<recipe>`, `sr/<recipe>/<method>`,
`adapt/`, `summary.json` and `report.html` (self-contained; its sections:
:mod:`realsr_fast.demo.sections`).

Example:
    >>> result = run_demo("realsr_demo")
    >>> result.report
    PosixPath('realsr_demo/report.html')
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from realsr_fast.batch import refuse_output_in_sources, source_images, to_rgb8
from realsr_fast.data.degrader import Degrader
from realsr_fast.data.imresize import imresize
from realsr_fast.data.kernel_bank import KernelBank, stack_kernels
from realsr_fast.data.kernel_files import kernel_paths, load_kernel
from realsr_fast.data.noise_bank import load_noise_bank
from realsr_fast.data.noise_mining import NoiseSettings, mine_noise_folder
from realsr_fast.data.paired import degrade_image
from realsr_fast.data.recipes import RECIPES
from realsr_fast.demo import ADAPT_ITERATIONS, DEMO_ITERATIONS
from realsr_fast.demo.adapted import AdaptedModel, adapt_to_samples
from realsr_fast.demo.records import (
    ADAPTED_METHODS,
    ADAPTED_RECIPE,
    LR_RECIPES,
    METHODS,
    SCALE,
    DemoResult,
    Outputs,
    Pair,
    Pairs,
    StageTime,
)
from realsr_fast.demo.sections import report_sections
from realsr_fast.errors import RealSRError
from realsr_fast.evaluate import Evaluation, evaluate_folders
from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.io import atomic_write, image_to_tensor, read_image, tensor_to_image, write_image
from realsr_fast.kernel_estimation import ITERATIONS
from realsr_fast.kernel_estimation.estimate import estimate_kernel_folder
from realsr_fast.kernel_estimation.estimators import KernelSettings
from realsr_fast.kernel_estimation.kernelgan.crops import prepare_image
from realsr_fast.models import DEFAULT_MODEL
from realsr_fast.report.page import write_report

NOISE_SETTINGS = NoiseSettings(patch=32, stride=32, max_var=20.0, min_mean=0.0)
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"


@dataclass(frozen=True)
class DemoSettings:
    """What one demo run is asked to do: the arguments of :func:`run_demo`, `out` as a Path."""

    out: Path
    samples_dir: str | os.PathLike
    iterations: int
    seed: int
    device: str
    progress: bool
    adapt_iterations: int

    def summary(self, noise_patches: int) -> dict[str, object]:
        """The settings as the report and `summary.json` show them, with the noise patches kept."""
        return {"iterations": self.iterations, "official_iterations": ITERATIONS, "seed": self.seed, "scale": SCALE,
                "noise": asdict(NOISE_SETTINGS), "noise_patches": noise_patches, "samples": str(self.samples_dir),
                "adapt_iterations": self.adapt_iterations}


class StageClock:
    """Times named stages and announces each one on screen (when `progress`)."""

    def __init__(self, total: int, progress: bool) -> None:
        self.total, self.progress, self.timings = total, progress, []

    @contextmanager
    def __call__(self, name: str, detail: str) -> Iterator[None]:
        if self.progress:
            tqdm.write(f"[{len(self.timings) + 1}/{self.total}] {name}: {detail}")
        start = time.perf_counter()
        yield
        self.timings.append(StageTime(name, time.perf_counter() - start, detail))
        if self.progress:
            tqdm.write(f"      {name} done in {self.timings[-1].seconds:.1f} s")


def run_demo(
    out_dir: str | os.PathLike = "realsr_demo",
    iterations: int = DEMO_ITERATIONS,
    seed: int = 0,
    device: str = "auto",
    samples_dir: str | os.PathLike = SAMPLES_DIR,
    progress: bool = True,
    adapt_iterations: int = ADAPT_ITERATIONS,
) -> DemoResult:
    """Run the pipeline of the module docstring on `samples_dir` and write `out_dir/report.html`.

    Args:
        out_dir: output folder (created; results of an earlier demo there are replaced).
        iterations: KernelGAN iterations per photo (official 3000).
        seed: seed of KernelGAN and of the degradation's random choices.
        device: "auto", "cpu" or "cuda" (KernelGAN and the SR model).
        samples_dir: folder of photos, at least 84x84 each (KernelGAN's minimum).
        progress: stage lines and progress bars on screen.
        adapt_iterations: fine-tuning iterations of the adapted model (0: no adapted column).

    Raises:
        RealSRError: a photo cannot be used, no noise patch qualifies, or the model is missing.
    """
    job = DemoSettings(Path(out_dir), samples_dir, iterations, seed, device, progress, adapt_iterations)
    photos = _usable_photos(job)
    job.out.mkdir(parents=True, exist_ok=True)
    clock = StageClock(total=9 if adapt_iterations else 7, progress=progress)
    noise_patches = _mine_noise(job, clock)
    _estimate_kernels(job, clock, photos)
    with clock("pairs", f"one LR per photo and recipe: {', '.join(LR_RECIPES)}"):
        pairs = {recipe: build_pairs(photos, job.out, recipe, seed) for recipe in LR_RECIPES}
    outputs = _upscale(job, clock, pairs)
    adapted = None
    if adapt_iterations:
        adapted, outputs[ADAPTED_RECIPE]["adapted"] = _adapt(job, clock, pairs)
    _save_outputs(job.out, outputs)
    with clock("metrics", f"PSNR / SSIM on Y (crop {SCALE}) and LPIPS when available, against the HR"):
        evaluations = {
            recipe: {method: evaluate_folders(sr_dir(job.out, recipe, method), job.out / "pairs" / "HR",
                                              crop_border=SCALE, lpips=True) for method in METHODS}
            for recipe in LR_RECIPES
        }
        held_out = {} if adapted is None else held_out_scores(job.out, evaluations[ADAPTED_RECIPE], adapted)
    result = DemoResult(job.out, job.out / "report.html", clock.timings, evaluations, adapted, held_out)
    settings = job.summary(noise_patches)
    sections = report_sections(job.out, [photo.stem for photo in photos], pairs, outputs, result, settings)
    write_report(result.report, "RealSR demo", sections,
                 subtitle=f"{len(photos)} sample photos, x{SCALE}, KernelGAN at {iterations} of {ITERATIONS} iterations")
    _write_summary(job.out / "summary.json", result, settings, pairs)
    return result


def _usable_photos(job: DemoSettings) -> list[Path]:
    """The photos of `job.samples_dir`, once the settings, the output folder and every photo are checked.

    Raises:
        RealSRError: a setting out of range, an output folder among the sources, a photo too small
            for KernelGAN, or a single photo when one must be held out for the adapted model.
    """
    if job.iterations < 1:
        raise RealSRError(f"--kernel-iters must be at least 1, got {job.iterations}")
    if job.adapt_iterations < 0:
        raise RealSRError(f"--adapt-iterations must be 0 (no adapted model) or more, got {job.adapt_iterations}")
    refuse_output_in_sources(job.out, [job.samples_dir])
    photos = source_images(job.samples_dir, "photo")
    for photo in photos:
        try:
            prepare_image(read_image(photo))
        except RealSRError as exc:
            raise RealSRError(f"{photo}: {exc}") from None
    if job.adapt_iterations and len(photos) < 2:
        raise RealSRError(f"the adapted model needs 2 photos or more (one is held out), {job.samples_dir} has "
                          f"{len(photos)}; use --adapt-iterations 0")
    return photos


def _mine_noise(job: DemoSettings, clock: StageClock) -> int:
    """Stage "noise": flat patches of the photos into `out/noise`; returns how many were kept."""
    with clock("noise", f"flat {NOISE_SETTINGS.patch}x{NOISE_SETTINGS.patch} patches (RealSR: 256; the samples "
               f"are 128 px), grey variance < {NOISE_SETTINGS.max_var:g}"):
        noise_report = mine_noise_folder(job.samples_dir, job.out / "noise", NOISE_SETTINGS, overwrite=True,
                                         progress=job.progress)
        if not noise_report.patches:
            raise RealSRError(f"no noise patch qualified in {job.samples_dir}: {noise_report.hint}")
    return noise_report.patches


def _estimate_kernels(job: DemoSettings, clock: StageClock, photos: list[Path]) -> None:
    """Stage "kernels": KernelGAN on every photo at once into `out/kernels` (x2 and x4 kernels)."""
    official = "(the official setting)" if job.iterations == ITERATIONS else f"(the official setting is {ITERATIONS})"
    with clock("kernels", f"KernelGAN x{SCALE} on {len(photos)} photos, {job.iterations} iterations each {official}"):
        settings = KernelSettings(scale=SCALE, iterations=job.iterations, seed=job.seed, batch=len(photos),
                                  device=job.device)
        summary = estimate_kernel_folder(job.samples_dir, job.out / "kernels", settings, overwrite=True,
                                         progress=job.progress)
        if not summary.ok:
            raise RealSRError("; ".join(reason for _, reason in summary.failed))


def _upscale(job: DemoSettings, clock: StageClock, pairs: Pairs) -> Outputs:
    """Stages "load model", "RealSR x4" and "bicubic x4": every LR image x4 by :data:`METHODS`."""
    lr_images = [(recipe, pair) for recipe, recipe_pairs in pairs.items() for pair in recipe_pairs]
    with clock("load model", "the official RealSR DF2K x4 weights (RRDBNet, 16.7 M parameters)"):
        upscaler = Upscaler(DEFAULT_MODEL, device=job.device)
    outputs: Outputs = {r: {m: {} for m in METHODS} for r in LR_RECIPES}
    with clock("RealSR x4", f"{len(lr_images)} LR images through the model on {upscaler.device} ({upscaler.precision})"):
        for recipe, pair in lr_images:
            outputs[recipe]["realsr"][pair.name] = upscaler(pair.lr)
    with clock("bicubic x4", f"{len(lr_images)} LR images, MATLAB bicubic imresize"):
        for recipe, pair in lr_images:
            outputs[recipe]["bicubic"][pair.name] = tensor_to_image(imresize(image_to_tensor(pair.lr), SCALE))
    return outputs


def _adapt(job: DemoSettings, clock: StageClock, pairs: Pairs) -> tuple[AdaptedModel, dict[str, np.ndarray]]:
    """Stages "adapt" and "adapted x4": the fine-tuned model, and its `(H, W, 3)` uint8 x4 results of
    the held-out photos' :data:`ADAPTED_RECIPE` LR images by name."""
    names = [pair.name for pair in pairs[ADAPTED_RECIPE]]
    with clock("adapt", f"fine-tune the official model {job.adapt_iterations} iterations on the photos not held out, "
               f"LR made on the fly with their kernels and noise ({ADAPTED_RECIPE})"):
        adapted = adapt_to_samples(job.out, job.out / "pairs" / "HR", names, job.adapt_iterations, job.seed,
                                   job.device, job.progress)
    held_out = [pair for pair in pairs[ADAPTED_RECIPE] if pair.name in adapted.held_out]
    with clock("adapted x4", f"{len(held_out)} held-out {ADAPTED_RECIPE} LR image(s) through the adapted model"):
        upscaler = Upscaler(str(adapted.model), device=job.device)
        images = {pair.name: upscaler(pair.lr) for pair in held_out}
    return adapted, images


def _save_outputs(out: Path, outputs: Outputs) -> None:
    """Every x4 result as `sr/<recipe>/<method>/<name>.png`."""
    for recipe, methods in outputs.items():
        for method, images in methods.items():
            for name, image in images.items():
                write_image(sr_dir(out, recipe, method) / f"{name}.png", image)

def held_out_scores(out: Path, evaluations: dict[str, Evaluation], adapted: AdaptedModel) -> dict[str, Evaluation]:
    """Bicubic's and RealSR's scores restricted to the held-out photos, and the adapted model's."""
    held = set(adapted.held_out)
    scores = {m: Evaluation(e.metric_names, [i for i in e.images if i.name in held], e.problems, e.notes, e.settings)
              for m, e in evaluations.items() if m in ADAPTED_METHODS}
    scores["adapted"] = evaluate_folders(sr_dir(out, ADAPTED_RECIPE, "adapted"), adapted.held_out_hr, crop_border=SCALE,
                                         lpips=True)
    return scores


def recipe_slug(recipe: str) -> str:
    """A recipe's name in folder names: "kernel+noise" -> "kernel_noise"."""
    return recipe.replace("+", "_")


def lr_dir(out: Path, recipe: str) -> Path:
    """Folder of the LR images of one recipe."""
    return out / "pairs" / f"LR_{recipe_slug(recipe)}"


def sr_dir(out: Path, recipe: str, method: str) -> Path:
    """Folder of one method's x4 outputs of one recipe's LR images."""
    return out / "sr" / recipe_slug(recipe) / method


def build_pairs(photos: list[Path], out: Path, recipe: str, seed: int) -> list[Pair]:
    """Degrade every photo with `recipe` and the kernels and noise in `out` into `out/pairs`.

    HR images go to `out/pairs/HR/<stem>.png`, LR images to :func:`lr_dir`. The kernel bank
    holds the x4 kernels of these photos only (not any other left in `out/kernels`).
    """
    files = [kernel_paths(out / "kernels", photo.stem, SCALE)["npy4"] for photo in photos]
    kernel_bank = KernelBank(stack_kernels([load_kernel(f) for f in files], SCALE, [str(f) for f in files]), files)
    noise_bank = load_noise_bank(out / "noise")
    degrader = Degrader(kernel_bank, noise_bank, SCALE, recipe, torch.Generator().manual_seed(seed))
    pairs = []
    for photo in photos:
        image = to_rgb8(read_image(photo))
        lr_size = (image.shape[0] // SCALE, image.shape[1] // SCALE)
        choices = degrader.sample(1, lr_size)
        hr, lr = degrade_image(image, degrader, choices)
        write_image(out / "pairs" / "HR" / f"{photo.stem}.png", hr)
        write_image(lr_dir(out, recipe) / f"{photo.stem}.png", lr)
        oy, ox = (int(v) for v in choices.noise_offset[0])
        kernel = "bicubic" if not RECIPES[recipe].kernels else str(kernel_bank.files[int(choices.kernel_index[0])])
        pairs.append(Pair(photo.stem, hr, lr, kernel, noise_bank.files[int(choices.noise_index[0])], (oy, ox)))
    return pairs


def _write_summary(path: Path, result: DemoResult, settings: dict, pairs: Pairs) -> None:
    """`summary.json`: settings, stage timings, scores and the choices that made every LR image."""
    summary = {
        "settings": settings,
        "timings_s": {t.name: round(t.seconds, 3) for t in result.timings},
        "scores": {recipe: {m: {image.name: image.scores for image in e.images} for m, e in by_method.items()}
                   for recipe, by_method in result.evaluations.items()},
        "mean": {recipe: {m: e.mean for m, e in by_method.items()} for recipe, by_method in result.evaluations.items()},
        "pairs": {recipe: {pair.name: pair.choices() for pair in recipe_pairs} for recipe, recipe_pairs in pairs.items()},
        "adapted": None if result.adapted is None else {
            "recipe": ADAPTED_RECIPE, "train": result.adapted.train, "held_out": result.adapted.held_out,
            "iterations": result.adapted.iterations, "seconds": round(result.adapted.seconds, 2),
            "model": str(result.adapted.model), "curve": result.adapted.curve, "settings": result.adapted.settings,
            "scores": {m: {image.name: image.scores for image in e.images}
                       for m, e in result.held_out_evaluations.items()},
            "mean": {m: e.mean for m, e in result.held_out_evaluations.items()},
        },
        "report": str(result.report),
    }
    with atomic_write(path, "w") as file:
        json.dump(summary, file, indent=1)
