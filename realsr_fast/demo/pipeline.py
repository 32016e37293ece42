"""`realsr demo`: the whole RealSR pipeline on the bundled sample photos, with an HTML report.

Stages, each timed (docs/METHOD.md §1):

1. noise: flat patches of the samples (:data:`NOISE_SETTINGS`: 32 px patches instead of 256,
   since the samples are 128 px; RealSR's variance threshold 20); first, as it fails fast;
2. kernels: KernelGAN on every sample, batched (the official 3000 iterations by default, under a
   minute for the four samples on a 2-core CPU; fewer with `iterations`), x2 kernels and the
   analytic x4 ones;
3. pairs: HR = the sample (already small and clean, so the 1/2 clean-up is skipped) and one LR
   per recipe of :data:`LR_RECIPES` (:class:`realsr_fast.data.degrader.Degrader`): the paper's
   (HR * k)↓4 + n with a random estimated kernel and a random real-noise crop, and bicubic↓4 + n,
   the degradation the released DF2K model was trained on;
4. upscale: the LR images x4 with the official RealSR DF2K model and with MATLAB bicubic;
5. adapt (unless `adapt_iterations` is 0): the official model fine-tuned on the photos not held
   out (:mod:`realsr_fast.demo.adapted`), then the held-out photos' kernel+noise LR x4 with it;
6. metrics: PSNR / SSIM (Y, crop 4) and LPIPS when available, against the HR.

Output folder: `noise/`, `kernels/`, `pairs/HR`, `pairs/LR_<recipe>`, `sr/<recipe>/<method>`,
`adapt/`, `summary.json` and `report.html` (self-contained, see :mod:`realsr_fast.demo.report`).

Example:
    >>> result = run_demo("realsr_demo")      # a few minutes on a 2-core CPU
    >>> result.report
    PosixPath('realsr_demo/report.html')
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

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
from realsr_fast.demo.report import (
    Bar,
    Box,
    Figure,
    Html,
    Layer,
    Section,
    bar_chart,
    bullets,
    busiest_window,
    compare,
    gallery,
    heading,
    link,
    paragraph,
    side_by_side,
    table,
    write_report,
)
from realsr_fast.errors import RealSRError
from realsr_fast.evaluate import Evaluation, evaluate_folders
from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.io import atomic_write, image_to_tensor, read_image, tensor_to_image, write_image
from realsr_fast.kernel_estimation import ITERATIONS
from realsr_fast.kernel_estimation.estimate import estimate_kernel_folder
from realsr_fast.kernel_estimation.kernelgan.crops import prepare_image
from realsr_fast.models import DEFAULT_MODEL

SCALE = 4
NOISE_SETTINGS = NoiseSettings(patch=32, stride=32, max_var=20.0, min_mean=0.0)
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
LR_RECIPES = {name: RECIPES[name].description for name in ("kernel+noise", "bicubic+noise")}
"""The degradations shown, each with what it is (Degrader recipe names)."""
METHODS = ("bicubic", "realsr")
METHOD_TITLES = {"bicubic": "bicubic x4", "realsr": "RealSR x4", "adapted": "adapted x4"}
ADAPTED_RECIPE = "kernel+noise"
"""The degradation the adapted model is trained for and shown on (the photos' own kernels and noise)."""
ADAPTED_METHODS = ("bicubic", "realsr", "adapted")
ZOOM = 40
"""Side of the zoomed HR crop (a multiple of SCALE)."""
ZOOM_SCALE = 8
"""Magnification of the zoomed crops (the LR crop: ZOOM_SCALE * SCALE), larger than the frames'."""
FRAME_SCALE, NARROW_FRAME_SCALE = 2, 1
"""Magnification of the HR-sized frames on wide screens and on phones (LR frames: times SCALE)."""
NOISE_GAIN = 8
"""Noise patches are also shown as 128 + NOISE_GAIN * (patch - its mean), to make the noise visible."""
KERNEL_SCALE, NOISE_SCALE = 5, 3
"""Magnification of the 33x33 kernels and of the noise patches."""
METRIC_TITLES = {"psnr_y": "PSNR-Y (dB)", "ssim_y": "SSIM-Y (0-1)", "lpips": "LPIPS (lower is better)"}
KERNEL_FLAGS = {
    "off-centre": "KernelGAN's kernel had to be moved by more than 1 px to centre it",
    "too wide": "95 % of its weight lies beyond 6 px of the centre, or over 5 % on the window's edge",
    "multi-modal": "more than one separate blob above a quarter of the peak",
    "bad sum": "its weights add up to more than 1 % away from 1",
    "not converged": "training stopped before the kernel constraints switched on (too few iterations)",
}
"""What each flag of the kernel quality check means (realsr_fast.kernel_estimation.quality), in plain words."""


@dataclass
class StageTime:
    """How long one stage took and what it did."""

    name: str
    seconds: float
    detail: str


@dataclass
class Pair:
    """One degraded pair: the file stem, `(H, W, 3)` uint8 HR and `(H/4, W/4, 3)` LR, and what made the LR."""

    name: str
    hr: np.ndarray
    lr: np.ndarray
    kernel: str
    """The kernel file, or "bicubic"."""
    noise_file: Path
    noise_offset: tuple[int, int]
    """`(oy, ox)`: top-left corner of the noise crop in the patch."""

    def choices(self) -> dict[str, object]:
        """The kernel and noise crop that made the LR, JSON-ready."""
        return {"kernel": self.kernel, "noise": str(self.noise_file), "noise_offset": list(self.noise_offset)}


@dataclass
class DemoResult:
    """What :func:`run_demo` made: the report's path, the stage timings, the scores per LR recipe and method."""

    out_dir: Path
    report: Path
    timings: list[StageTime] = field(default_factory=list)
    evaluations: dict[str, dict[str, Evaluation]] = field(default_factory=dict)
    adapted: AdaptedModel | None = None
    held_out_evaluations: dict[str, Evaluation] = field(default_factory=dict)
    """:data:`ADAPTED_METHODS`' scores on the held-out photos' :data:`ADAPTED_RECIPE` LR images."""


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
    if iterations < 1:
        raise RealSRError(f"--kernel-iters must be at least 1, got {iterations}")
    if adapt_iterations < 0:
        raise RealSRError(f"--adapt-iterations must be 0 (no adapted model) or more, got {adapt_iterations}")
    out = Path(out_dir)
    refuse_output_in_sources(out, [samples_dir])
    photos = source_images(samples_dir, "photo")
    for photo in photos:
        try:
            prepare_image(read_image(photo))
        except RealSRError as exc:
            raise RealSRError(f"{photo}: {exc}") from None
    if adapt_iterations and len(photos) < 2:
        raise RealSRError(f"the adapted model needs 2 photos or more (one is held out), {samples_dir} has "
                          f"{len(photos)}; use --adapt-iterations 0")
    out.mkdir(parents=True, exist_ok=True)
    clock = StageClock(total=9 if adapt_iterations else 7, progress=progress)
    names = [photo.stem for photo in photos]

    with clock("noise", f"flat {NOISE_SETTINGS.patch}x{NOISE_SETTINGS.patch} patches (RealSR: 256; the samples "
               f"are 128 px), grey variance < {NOISE_SETTINGS.max_var:g}"):
        noise_report = mine_noise_folder(samples_dir, out / "noise", NOISE_SETTINGS, overwrite=True, progress=progress)
        if not noise_report.patches:
            raise RealSRError(f"no noise patch qualified in {samples_dir}: {noise_report.hint}")
    with clock("kernels", f"KernelGAN x{SCALE} on {len(photos)} photos, {iterations} iterations each "
               f"{'(the official setting)' if iterations == ITERATIONS else f'(the official setting is {ITERATIONS})'}"):
        summary = estimate_kernel_folder(samples_dir, out / "kernels", scale=SCALE, iterations=iterations, seed=seed,
                                         batch=len(photos), device=device, overwrite=True, progress=progress)
        if summary.failed:
            raise RealSRError("; ".join(f"{name}: {reason}" for name, reason in summary.failed.items()))
    with clock("pairs", f"one LR per photo and recipe: {', '.join(LR_RECIPES)}"):
        pairs = {recipe: build_pairs(photos, out, recipe, seed) for recipe in LR_RECIPES}
    lr_images = [(recipe, pair) for recipe, recipe_pairs in pairs.items() for pair in recipe_pairs]
    with clock("load model", "the official RealSR DF2K x4 weights (RRDBNet, 16.7 M parameters)"):
        upscaler = Upscaler(DEFAULT_MODEL, device=device)
    outputs: Outputs = {r: {m: {} for m in METHODS} for r in LR_RECIPES}
    with clock("RealSR x4", f"{len(lr_images)} LR images through the model on {upscaler.device} ({upscaler.precision})"):
        for recipe, pair in lr_images:
            outputs[recipe]["realsr"][pair.name] = upscaler(pair.lr)
    with clock("bicubic x4", f"{len(lr_images)} LR images, MATLAB bicubic imresize"):
        for recipe, pair in lr_images:
            outputs[recipe]["bicubic"][pair.name] = tensor_to_image(imresize(image_to_tensor(pair.lr), SCALE))
    adapted = None
    if adapt_iterations:
        with clock("adapt", f"fine-tune the official model {adapt_iterations} iterations on the photos not held out, "
                   f"LR made on the fly with their kernels and noise ({ADAPTED_RECIPE})"):
            adapted = adapt_to_samples(out, out / "pairs" / "HR", names, adapt_iterations, seed, device, progress)
        held_out = [pair for pair in pairs[ADAPTED_RECIPE] if pair.name in adapted.held_out]
        with clock("adapted x4", f"{len(held_out)} held-out {ADAPTED_RECIPE} LR image(s) through the adapted model"):
            adapted_upscaler = Upscaler(str(adapted.model), device=device)
            outputs[ADAPTED_RECIPE]["adapted"] = {pair.name: adapted_upscaler(pair.lr) for pair in held_out}
    for recipe, methods in outputs.items():
        for method, images in methods.items():
            for name, image in images.items():
                write_image(sr_dir(out, recipe, method) / f"{name}.png", image)
    with clock("metrics", f"PSNR / SSIM on Y (crop {SCALE}) and LPIPS when available, against the HR"):
        evaluations = {
            recipe: {method: evaluate_folders(sr_dir(out, recipe, method), out / "pairs" / "HR", crop_border=SCALE,
                                              lpips=True) for method in METHODS}
            for recipe in LR_RECIPES
        }
        held_out_evaluations = {} if adapted is None else held_out_scores(out, evaluations[ADAPTED_RECIPE], adapted)
    result = DemoResult(out, out / "report.html", clock.timings, evaluations, adapted, held_out_evaluations)
    settings = {"iterations": iterations, "official_iterations": ITERATIONS, "seed": seed, "scale": SCALE,
                "noise": asdict(NOISE_SETTINGS), "noise_patches": noise_report.patches, "samples": str(samples_dir),
                "adapt_iterations": adapt_iterations}
    sections = report_sections(out, names, pairs, outputs, result, settings)
    write_report(result.report, "RealSR demo", sections,
                 subtitle=f"{len(photos)} sample photos, x{SCALE}, KernelGAN at {iterations} of {ITERATIONS} iterations")
    _write_summary(out / "summary.json", result, settings, pairs)
    return result


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


def kernel_image(kernel: np.ndarray) -> np.ndarray:
    """A `(k, k)` kernel as `(k, k)` uint8 grey, its maximum white (negative values black)."""
    peak = kernel.max()
    return np.round(np.clip(kernel / peak if peak > 0 else kernel, 0, 1) * 255).astype(np.uint8)


def amplified_noise(patch: np.ndarray) -> np.ndarray:
    """`(P, P, 3)` uint8 patch -> 128 + NOISE_GAIN * (patch - per-channel mean), uint8."""
    pixels = patch.astype(np.float64)
    centred = pixels - pixels.mean(axis=(0, 1), keepdims=True)
    return np.round(np.clip(128 + NOISE_GAIN * centred, 0, 255)).astype(np.uint8)


def _score(evaluation: Evaluation, name: str) -> dict[str, float]:
    return next(image.scores for image in evaluation.images if image.name == name)


def format_metric(metric: str, value: float) -> str:
    """PSNR with 2 decimals (dB), SSIM and LPIPS with 4, as SR papers print them."""
    return f"{value:.2f}" if metric.startswith("psnr") else f"{value:.4f}"


def format_delta(metric: str, value: float) -> str:
    """A difference of scores with its sign, to the precision of :func:`format_metric`."""
    return f"{value:+.2f}" if metric.startswith("psnr") else f"{value:+.4f}"


def format_seconds(seconds: float) -> str:
    """"12.3 s", or "40 ms" under a second (so fast stages do not read "0.0 s")."""
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def winners(scores: dict[str, dict[str, float]], metric: str) -> set[str]:
    """The method with the best `metric` among `scores[method]` (LPIPS: lowest), none on a tie."""
    values = {method: by_metric[metric] for method, by_metric in scores.items()}
    best = (min if metric == "lpips" else max)(values.values())
    chosen = {method for method, value in values.items() if value == best}
    return chosen if len(chosen) == 1 else set()


def _scored(metric: str, value: float, best: bool) -> str:
    """A formatted score, in bold when it is the best."""
    text = format_metric(metric, value)
    return f"**{text}**" if best else text


Pairs = dict[str, list[Pair]]
"""The pairs of each LR recipe."""
Outputs = dict[str, dict[str, dict[str, np.ndarray]]]
"""`outputs[recipe][method][name]`: `(H, W, 3)` uint8 x4 results."""


def report_sections(out: Path, names: list[str], pairs: Pairs, outputs: Outputs, result: DemoResult,
                    settings: dict, methods: Sequence[str] = METHODS) -> list[Section]:
    """The report's sections: overview, kernels, noise, pairs, comparison, metrics, timings.

    `methods` are compared in this order; the first is the baseline that differences are taken from.
    """
    sections = [
        _overview_section(settings, len(names)),
        _kernels_section(out, names, settings["iterations"]),
        _noise_section(out, len(names)),
        _pairs_section(pairs),
        _comparison_section(pairs, outputs, result.evaluations, methods),
        _metrics_section(result.evaluations, methods),
    ]
    if result.adapted is not None:
        sections.append(_adapted_section(pairs, outputs, result.held_out_evaluations, result.adapted))
    return sections + [_timings_section(result.timings)]


def _overview_section(settings: dict, photos: int) -> Section:
    noise = settings["noise"]
    files = ", ".join(link(name, name) for name in ("noise/", "kernels/", "pairs/", "sr/", "summary.json"))
    return Section("overview", "Overview", [
        paragraph(
            "RealSR (Ji et al., NTIRE 2020) learns real-world super-resolution from the photos themselves: "
            "KernelGAN estimates each photo's blur kernel, flat regions give samples of the camera's noise, "
            f"and training pairs are made as LR = (HR * k)↓s + n. This demo runs each step on {photos} photos "
            f"({settings['samples']}) and upscales the degraded images with the official RealSR DF2K x4 model."
        ),
        paragraph(
            (f"KernelGAN ran the official {settings['iterations']} iterations per photo. "
             if settings["iterations"] == settings["official_iterations"] else
             f"Reduced setting: KernelGAN ran {settings['iterations']} iterations per photo instead of the official "
             f"{settings['official_iterations']}, so the kernels are rough (see their flags). ")
            + f"Noise patches are {noise['patch']}x{noise['patch']} px (RealSR: 256x256) because the samples are small.",
            note=True,
        ),
        bullets([
            f"scale x{settings['scale']}, seed {settings['seed']}",
            (f"noise: {noise['patch']}x{noise['patch']} px patches every {noise['stride']} px, kept when the grey "
             f"variance is below {noise['max_var']:g} grey levels² (0-255 scale) and the mean above "
             f"{noise['min_mean']:g}; {settings['noise_patches']} patch(es) kept"),
            ("HR: the sample photos themselves (already small and clean; on real photos run `realsr cleanup` first, "
             "the bicubic 1/2 clean-up)"),
            "LR recipes: " + "; ".join(f"{recipe} ({what})" for recipe, what in LR_RECIPES.items()),
            Html(f"files next to this page: {files}"),
        ]),
    ])


def _kernels_section(out: Path, names: list[str], iterations: int) -> Section:
    figures, seen = [], set()
    for name in names:
        paths = kernel_paths(out / "kernels", name, SCALE)
        report = json.loads((out / "kernels" / name / f"{name}_report.json").read_text(encoding="utf-8"))
        flags = report.get("flags", [])
        seen.update(flags)
        caption = f"{name}\n" + (f"flags: {', '.join(flags)}" if flags else "no flag")
        figures.append(Figure(kernel_image(load_kernel(paths["npy4"])), caption, KERNEL_SCALE, KERNEL_SCALE - 1))
    explained = [f"{flag}: {KERNEL_FLAGS.get(flag, 'see the kernel report')}" for flag in KERNEL_FLAGS if flag in seen]
    return Section("kernels", "Estimated kernels", [
        paragraph(f"KernelGAN's x{SCALE} kernel of each photo (33x33, the x2 kernel convolved with itself and "
                  f"dilated), each weight a square of {KERNEL_SCALE}x{KERNEL_SCALE} screen pixels; white is the "
                  f"largest weight, black zero or below. {iterations} iterations per photo."
                  + (" The quality check flagged:" if explained else " The quality check flagged none.")),
        bullets(explained) if explained else "",
        gallery(figures),
    ])


def _noise_section(out: Path, photos: int) -> Section:
    manifest = json.loads((out / "noise" / "manifest.json").read_text(encoding="utf-8"))
    figures = []
    for entry in manifest["patches"]:
        patch = to_rgb8(read_image(out / "noise" / entry["file"]))
        caption = f"{Path(entry['source']).stem} at ({entry['y']}, {entry['x']})\nvariance {entry['var']:.1f} grey levels²"
        figures += [Figure(patch, caption, NOISE_SCALE, NOISE_SCALE - 1),
                    Figure(amplified_noise(patch), f"its noise x{NOISE_GAIN}", NOISE_SCALE, NOISE_SCALE - 1)]
    rows = [(Path(photo).stem, info["candidates"], info["kept"]) for photo, info in manifest["photos"].items()]
    reasons = [f"{Path(photo).stem} kept none: {info['hint']}" for photo, info in manifest["photos"].items()
               if info.get("hint")]
    sources = sorted({Path(entry["source"]).stem for entry in manifest["patches"]})
    pooled = (f"Only {len(sources)} of the {photos} photos ({', '.join(sources)}) had a patch that flat, so every "
              "LR image below carries noise from " + ("that photo" if len(sources) == 1 else "those photos")
              + ", not from its own: RealSR pools the patches of a data set, assumed to come from one kind of "
              "camera. A photo keeps no patch when all of its patches hold texture or shading; below the table, "
              "how far its flattest patch was from the threshold.") if len(sources) < photos else (
              "Every photo gave patches; RealSR pools them, so an LR image may carry another photo's noise.")
    return Section("noise", "Noise patches", [
        paragraph(f"Flat patches kept as samples of the camera noise: each patch as saved ({NOISE_SCALE}x), and beside "
                  f"it its noise (minus the mean, x{NOISE_GAIN}, around mid-grey), which is what training adds to an "
                  "LR image. Variance of the grey level on the 0-255 scale, in grey levels²."),
        paragraph(pooled, note=len(sources) < photos),
        table(("photo", f"{manifest['settings']['patch']} px patches tested", "kept"), rows),
        bullets(reasons) if reasons else "",
        gallery(figures),
    ])


def _pairs_section(pairs: Pairs) -> Section:
    rows, figures = [], []
    for index, (name, hr) in enumerate((pair.name, pair.hr) for pair in next(iter(pairs.values()))):
        figures.append(Figure(hr, f"{name} HR {hr.shape[1]}x{hr.shape[0]}"))
        for recipe, recipe_pairs in pairs.items():
            pair = recipe_pairs[index]
            kernel = "bicubic" if pair.kernel == "bicubic" else f"kernel of {Path(pair.kernel).parent.name}"
            rows.append((name, recipe, kernel, f"{pair.noise_file.name}, crop at {pair.noise_offset}"))
            figures.append(Figure(pair.lr, f"LR {recipe}\n{pair.lr.shape[1]}x{pair.lr.shape[0]}", SCALE, SCALE // 2))
    return Section("pairs", "Degraded pairs", [
        paragraph(f"Each HR image and its LR images, the LR magnified {SCALE}x to the HR's size ({SCALE // 2}x on "
                  "phones). kernel+noise, "
                  f"RealSR's recipe: the HR blurred with an estimated kernel picked at random, every {SCALE}th pixel "
                  "kept, plus a random crop of a noise patch minus its mean. bicubic+noise: MATLAB bicubic "
                  f"1/{SCALE} plus the same kind of noise, the degradation the released DF2K model was trained on."),
        table(("image", "recipe", "blur", "noise patch, crop offset (y, x)"), rows),
        gallery(figures),
    ])


def _comparison_section(pairs: Pairs, outputs: Outputs, evaluations: dict[str, dict[str, Evaluation]],
                        methods: Sequence[str]) -> Section:
    small = ZOOM // SCALE
    body = [paragraph(
        f"For each image and LR recipe: the LR input, {', '.join(METHOD_TITLES[m] for m in methods)} and the HR, "
        f"at {FRAME_SCALE}x ({NARROW_FRAME_SCALE}x on phones; the LR {SCALE} times more), without smoothing; the "
        "best score of each image in bold green. The yellow box marks the busiest "
        f"{ZOOM}x{ZOOM} px region, shown {ZOOM_SCALE}x in the slider: drag across it (or use the slider) to wipe "
        "between two versions of the same pixels, pick any two in the menus, or swap the sides.")]
    for index, hr in enumerate(pair.hr for pair in next(iter(pairs.values()))):
        y, x = busiest_window(hr, ZOOM)
        box, lr_box = Box(y, x, ZOOM, ZOOM), Box(y // SCALE, x // SCALE, small, small)
        for recipe, recipe_pairs in pairs.items():
            pair = recipe_pairs[index]
            scores = {m: _score(evaluations[recipe][m], pair.name) for m in methods}
            views = [(f"LR {recipe}", pair.lr, SCALE, lr_box, "")]
            views += [(METHOD_TITLES[m], outputs[recipe][m][pair.name], 1, box, _caption_scores(scores, m))
                      for m in methods]
            views.append(("HR (ground truth)", hr, 1, box, ""))
            frames = [Figure(image, title + text, FRAME_SCALE * up, NARROW_FRAME_SCALE * up, [mark])
                      for title, image, up, mark, text in views]
            layers = [Layer(title, image[mark.y:mark.y + mark.h, mark.x:mark.x + mark.w], ZOOM_SCALE * up)
                      for title, image, up, mark, _ in views]
            body.append(heading(f"{pair.name}: LR made with {recipe}"))
            slider = compare(layers, 1, len(methods), f"crop at ({y}, {x}), {ZOOM_SCALE}x")
            body.append(side_by_side(gallery(frames), slider))
    return Section("comparison", "LR, " + ", ".join(METHOD_TITLES[m] for m in methods) + " and HR", body)


def _adapted_section(pairs: Pairs, outputs: Outputs, evaluations: dict[str, Evaluation],
                     adapted: AdaptedModel) -> Section:
    """Bicubic, the official model and the adapted one side by side on the held-out photos."""
    held = {ADAPTED_RECIPE: [pair for pair in pairs[ADAPTED_RECIPE] if pair.name in adapted.held_out]}
    start, last = adapted.curve[0], adapted.curve[-1]
    intro = [
        paragraph(
            f"The official model fine-tuned for these photos, as `realsr adapt` does it (PSNR mode: L1, "
            f"{adapted.settings['patch']} px HR crops x {adapted.settings['batch']}, learning rate "
            f"{adapted.settings['lr_g']:g}, from the official DF2K weights): {adapted.iterations} iterations in "
            f"{format_seconds(adapted.seconds)} on {adapted.settings['device']}, on crops of "
            f"{', '.join(adapted.train)} degraded on the fly with the kernels and noise above. Held out: "
            f"{', '.join(adapted.held_out)}; no crop of it was trained on "
            "(the kernel and noise banks are the camera's, from every photo, as in `realsr adapt`). The adapted "
            "model is the last one, not the best on the held-out photo, since that photo is what it is judged on."),
        paragraph(
            f"The training's own check on the held-out photo (its LR drawn anew with a fixed seed): PSNR-Y "
            f"{start['psnr']:.2f} dB for the official model, {last['psnr']:.2f} dB after {last['iteration']} "
            f"iterations ({last['psnr'] - start['psnr']:+.2f} dB). A few minutes on a CPU is a short run: "
            "`realsr adapt` on more photos and for longer is what makes a model for a camera (docs/adapt.md).",
            note=True),
    ]
    by_recipe = {ADAPTED_RECIPE: evaluations}
    body = (intro + _comparison_section(held, outputs, by_recipe, ADAPTED_METHODS).body
            + _metrics_section(by_recipe, ADAPTED_METHODS).body)
    return Section("adapted", "Adapted to these photos: bicubic, official and adapted on held-out photos", body)


def _caption_scores(scores: dict[str, dict[str, float]], method: str) -> str:
    """One line per metric of `method`'s scores ("\nPSNR-Y 23.34 dB"), the best of `scores` in bold."""
    lines = ""
    for metric, label, unit in (("psnr_y", "PSNR-Y", " dB"), ("ssim_y", "SSIM-Y", ""), ("lpips", "LPIPS", "")):
        if metric in scores[method]:
            lines += f"\n{label} {_scored(metric, scores[method][metric], method in winners(scores, metric))}{unit}"
    return lines


def _metrics_section(evaluations: dict[str, dict[str, Evaluation]], methods: Sequence[str]) -> Section:
    baseline = methods[0]
    body = [paragraph(f"PSNR in dB and SSIM (0 to 1) on the Y channel of ITU-R BT.601, {SCALE} pixels cropped from "
                      "each side, SSIM with an 11x11 Gaussian window (sigma 1.5): the way SR papers report them "
                      f"(`realsr eval`). Higher is better; the better score of each row is in bold green. Δ is "
                      f"the method's score minus {METHOD_TITLES[baseline]}'s.")]
    deltas: dict[str, list[Bar]] = {}
    for recipe, by_method in evaluations.items():
        names = by_method[baseline].metric_names
        headers = ["image"]
        for metric in names:
            headers += [f"{METRIC_TITLES.get(metric, metric)} {METHOD_TITLES[m]}" for m in methods]
            headers += [f"Δ {METRIC_TITLES.get(metric, metric)} {METHOD_TITLES[m]}" for m in methods[1:]]

        images = [image.name for image in by_method[baseline].images]
        rows = [[name] + _metric_cells({m: _score(by_method[m], name) for m in methods}, names, methods)
                for name in images]
        total = ["mean"] + _metric_cells({m: by_method[m].mean for m in methods}, names, methods)
        body += [heading(f"LR made with {recipe}"), table(headers, rows, total)]
        for metric in ("psnr_y", "ssim_y"):
            for m in methods[1:]:
                deltas.setdefault(f"{METRIC_TITLES[metric]}: {METHOD_TITLES[m]} − {METHOD_TITLES[baseline]}", []).extend(
                    Bar(f"{name}, {recipe}", d, format_delta(metric, d) + (" dB" if metric == "psnr_y" else ""))
                    for name in images
                    for d in [_score(by_method[m], name)[metric] - _score(by_method[baseline], name)[metric]])
    for title, bars in deltas.items():
        body += [heading(f"Δ {title}, per image (green: better than {METHOD_TITLES[baseline]})"),
                 bar_chart(bars, signed=True)]
    body.append(paragraph(
        "RealSR is trained for perceptual quality (GAN and VGG losses): sharper textures than bicubic, often at a "
        "lower PSNR, as in the paper. Judge the pictures, and LPIPS when shown (lower is better). The DF2K model "
        "was trained on bicubic+noise LR images; kernel+noise LR images, blurred by these photos' own rough "
        "kernels, are outside what it saw, which is why RealSR trains a model per kind of camera."))
    notes = sorted({note for by_method in evaluations.values() for evaluation in by_method.values()
                    for note in evaluation.notes + evaluation.problems})
    body += [paragraph(note, note=True) for note in notes]
    return Section("metrics", "Metrics", body)


def _metric_cells(scores: dict[str, dict[str, float]], metrics: Sequence[str], methods: Sequence[str]) -> list[str]:
    """One table row's cells: per metric, every method's score (the best in bold), then each Δ from methods[0]."""
    cells = []
    for metric in metrics:
        best = winners(scores, metric)
        cells += [_scored(metric, scores[m][metric], m in best) for m in methods]
        cells += [format_delta(metric, scores[m][metric] - scores[methods[0]][metric]) for m in methods[1:]]
    return cells


def _timings_section(timings: list[StageTime]) -> Section:
    total = sum(t.seconds for t in timings)
    bars = [Bar(t.name, t.seconds, f"{format_seconds(t.seconds)} ({100 * t.seconds / total:.0f} %)", t.detail)
            for t in timings]
    return Section("timings", "Timings", [
        paragraph(f"Wall-clock time of each stage; total {format_seconds(total)}."),
        bar_chart(bars),
    ])


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
