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
5. metrics: PSNR / SSIM (Y, crop 4) and LPIPS when available, against the HR.

Output folder: `noise/`, `kernels/`, `pairs/HR`, `pairs/LR_<recipe>`, `sr/<recipe>/<method>`,
`summary.json` and `report.html` (self-contained, see :mod:`realsr_fast.demo.report`).

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
from realsr_fast.demo.report import Figure, Section, bullets, gallery, heading, paragraph, table, write_report
from realsr_fast.errors import RealSRError
from realsr_fast.evaluate import Evaluation, evaluate_folders
from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.io import atomic_write, image_to_tensor, read_image, tensor_to_image, write_image
from realsr_fast.kernelgan.crops import prepare_image
from realsr_fast.kernelgan.estimate import estimate_kernel_folder
from realsr_fast.kernelgan.training import ITERATIONS
from realsr_fast.models import DEFAULT_MODEL

SCALE = 4
DEMO_ITERATIONS = ITERATIONS
NOISE_SETTINGS = NoiseSettings(patch=32, stride=32, max_var=20.0, min_mean=0.0)
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
LR_RECIPES = {name: RECIPES[name].description for name in ("kernel+noise", "bicubic+noise")}
"""The degradations shown, each with what it is (Degrader recipe names)."""
METHODS = ("bicubic", "realsr")
METHOD_TITLES = {"bicubic": "bicubic x4", "realsr": "RealSR x4"}
ZOOM = 40
"""Side of the zoomed HR crop (a multiple of SCALE)."""
NOISE_GAIN = 8
"""Noise patches are also shown as 128 + NOISE_GAIN * (patch - its mean), to make the noise visible."""
FRAME_PX, ZOOM_PX, KERNEL_PX, NOISE_PX = 240, 160, 165, 96
"""Displayed widths in the report (CSS pixels)."""


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
) -> DemoResult:
    """Run the pipeline of the module docstring on `samples_dir` and write `out_dir/report.html`.

    Args:
        out_dir: output folder (created; results of an earlier demo there are replaced).
        iterations: KernelGAN iterations per photo (official 3000).
        seed: seed of KernelGAN and of the degradation's random choices.
        device: "auto", "cpu" or "cuda" (KernelGAN and the SR model).
        samples_dir: folder of photos, at least 84x84 each (KernelGAN's minimum).
        progress: stage lines and progress bars on screen.

    Raises:
        RealSRError: a photo cannot be used, no noise patch qualifies, or the model is missing.
    """
    if iterations < 1:
        raise RealSRError(f"--iters must be at least 1, got {iterations}")
    out = Path(out_dir)
    refuse_output_in_sources(out, [samples_dir])
    photos = source_images(samples_dir, "photo")
    for photo in photos:
        try:
            prepare_image(read_image(photo))
        except RealSRError as exc:
            raise RealSRError(f"{photo}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    clock = StageClock(total=7, progress=progress)
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
    result = DemoResult(out, out / "report.html", clock.timings, evaluations)
    settings = {"iterations": iterations, "official_iterations": ITERATIONS, "seed": seed, "scale": SCALE,
                "noise": asdict(NOISE_SETTINGS), "noise_patches": noise_report.patches, "samples": str(samples_dir)}
    sections = report_sections(out, names, pairs, outputs, result, settings)
    write_report(result.report, "RealSR demo", sections,
                 subtitle=f"{len(photos)} sample photos, x{SCALE}, KernelGAN at {iterations} of {ITERATIONS} iterations")
    _write_summary(out / "summary.json", result, settings, pairs)
    return result


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


def busiest_window(image: np.ndarray, side: int, step: int = SCALE) -> tuple[int, int]:
    """Top-left `(y, x)`, multiples of `step`, of the `side`-square window with the most gradient.

    `image` is `(H, W, 3)` uint8; the gradient is |dx| + |dy| of the channel mean.
    """
    grey = image.astype(np.float64).mean(axis=2)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys = np.arange(0, image.shape[0] - side + 1, step)
    xs = np.arange(0, image.shape[1] - side + 1, step)
    sums = (integral[ys[:, None] + side, xs[None, :] + side] - integral[ys[:, None], xs[None, :] + side]
            - integral[ys[:, None] + side, xs[None, :]] + integral[ys[:, None], xs[None, :]])
    row, col = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(ys[row]), int(xs[col])


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


def _format_scores(scores: dict[str, float]) -> str:
    text = f"{format_metric('psnr_y', scores['psnr_y'])} dB / SSIM {format_metric('ssim_y', scores['ssim_y'])}"
    return text + (f"\nLPIPS {format_metric('lpips', scores['lpips'])}" if "lpips" in scores else "")


Pairs = dict[str, list[Pair]]
"""The pairs of each LR recipe."""
Outputs = dict[str, dict[str, dict[str, np.ndarray]]]
"""`outputs[recipe][method][name]`: `(H, W, 3)` uint8 x4 results."""


def report_sections(out: Path, names: list[str], pairs: Pairs, outputs: Outputs, result: DemoResult,
                    settings: dict) -> list[Section]:
    """The report's sections: overview, kernels, noise, pairs, comparison, metrics, timings."""
    return [
        _overview_section(out, settings, len(names)),
        _kernels_section(out, names, settings["iterations"]),
        _noise_section(out),
        _pairs_section(pairs),
        _comparison_section(pairs, outputs, result.evaluations),
        _metrics_section(result.evaluations),
        _timings_section(result.timings),
    ]


def _overview_section(out: Path, settings: dict, photos: int) -> Section:
    noise = settings["noise"]
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
            + f"Noise patches are {noise['patch']}x{noise['patch']} (RealSR: 256x256) because the samples are small.",
            note=True,
        ),
        bullets([
            f"scale x{settings['scale']}, seed {settings['seed']}",
            f"noise: patch {noise['patch']}, stride {noise['stride']}, grey variance < {noise['max_var']:g}, "
            f"mean > {noise['min_mean']:g}; {settings['noise_patches']} patch(es) kept",
            "HR: the sample photos themselves (already small and clean; on real photos run `realsr cleanup` first, "
            "the bicubic 1/2 clean-up)",
            "LR recipes: " + "; ".join(f"{recipe} ({what})" for recipe, what in LR_RECIPES.items()),
            f"files: {out / 'noise'}, {out / 'kernels'}, {out / 'pairs'}, {out / 'sr'}, {out / 'summary.json'}",
        ]),
    ])


def _kernels_section(out: Path, names: list[str], iterations: int) -> Section:
    figures = []
    for name in names:
        paths = kernel_paths(out / "kernels", name, SCALE)
        report = json.loads((out / "kernels" / name / f"{name}_report.json").read_text(encoding="utf-8"))
        flags = ", ".join(report.get("flags", [])) or "no flags"
        figures.append(Figure(kernel_image(load_kernel(paths["npy4"])), f"{name} (x4, 33x33)\n{flags}", KERNEL_PX))
    return Section("kernels", "Estimated kernels", [
        paragraph(f"KernelGAN's x4 kernel of each photo (the x2 kernel convolved with itself, dilated), magnified; "
                  f"white is the peak. {iterations} iterations per photo. Flags from the kernel quality check: "
                  "off-centre, too wide, multi-modal, bad sum, not converged (the constraints never switched on)."),
        gallery(figures),
    ])


def _noise_section(out: Path) -> Section:
    manifest = json.loads((out / "noise" / "manifest.json").read_text(encoding="utf-8"))
    figures = []
    for entry in manifest["patches"]:
        patch = to_rgb8(read_image(out / "noise" / entry["file"]))
        caption = f"{Path(entry['source']).stem} ({entry['y']}, {entry['x']})\nvar {entry['var']:.1f}"
        figures += [Figure(patch, caption, NOISE_PX), Figure(amplified_noise(patch), f"x{NOISE_GAIN} noise", NOISE_PX)]
    rows = [(photo, info["candidates"], info["kept"]) for photo, info in manifest["photos"].items()]
    return Section("noise", "Noise patches", [
        paragraph(f"Flat patches kept as samples of the camera noise: each patch as saved, and beside it its noise "
                  f"(minus the mean, x{NOISE_GAIN}, around mid-grey), which is what training adds to an LR image."),
        table(("photo", "patches tested", "kept"), rows),
        gallery(figures),
    ])


def _pairs_section(pairs: Pairs) -> Section:
    rows, figures = [], []
    for index, (name, hr) in enumerate((pair.name, pair.hr) for pair in next(iter(pairs.values()))):
        figures.append(Figure(hr, f"{name} HR {hr.shape[1]}x{hr.shape[0]}", FRAME_PX // 2))
        for recipe, recipe_pairs in pairs.items():
            pair = recipe_pairs[index]
            kernel = "bicubic" if pair.kernel == "bicubic" else f"kernel of {Path(pair.kernel).parent.name}"
            rows.append((name, recipe, kernel, f"{pair.noise_file.name} at {pair.noise_offset}"))
            figures.append(Figure(pair.lr, f"LR {recipe}\n{pair.lr.shape[1]}x{pair.lr.shape[0]}", FRAME_PX // 2))
    return Section("pairs", "Degraded pairs", [
        paragraph(f"Each HR image and its LR images. kernel+noise, RealSR's recipe: the HR blurred with an "
                  f"estimated kernel picked at random, every {SCALE}th pixel kept, plus a random crop of a noise "
                  f"patch minus its mean. bicubic+noise: MATLAB bicubic 1/{SCALE} plus the same kind of noise, "
                  "the degradation the released DF2K model was trained on."),
        table(("image", "recipe", "blur", "noise patch (crop offset)"), rows),
        gallery(figures),
    ])


def _comparison_section(pairs: Pairs, outputs: Outputs, evaluations: dict[str, dict[str, Evaluation]]) -> Section:
    body = [paragraph(f"For each image and LR recipe: the LR input (magnified, nearest neighbour), bicubic "
                      f"x{SCALE}, RealSR x{SCALE} and the HR; below, the same {ZOOM}x{ZOOM} HR region, the busiest "
                      "of the image, magnified.")]
    for index, hr in enumerate(pair.hr for pair in next(iter(pairs.values()))):
        y, x = busiest_window(hr, ZOOM)
        small = slice(y // SCALE, (y + ZOOM) // SCALE), slice(x // SCALE, (x + ZOOM) // SCALE)
        crop = slice(y, y + ZOOM), slice(x, x + ZOOM)
        for recipe, recipe_pairs in pairs.items():
            pair = recipe_pairs[index]
            frames = [(f"LR ({recipe})", pair.lr, small)]
            frames += [(f"{METHOD_TITLES[m]}\n{_format_scores(_score(evaluations[recipe][m], pair.name))}",
                        outputs[recipe][m][pair.name], crop) for m in METHODS]
            frames.append(("HR (ground truth)", hr, crop))
            body.append(heading(f"{pair.name}: LR made with {recipe}"))
            body.append(gallery([Figure(image, caption, FRAME_PX) for caption, image, _ in frames]))
            body.append(gallery([Figure(image[region], f"{caption.splitlines()[0]}, crop at ({y}, {x})", ZOOM_PX)
                                 for caption, image, region in frames]))
    return Section("comparison", "LR, bicubic, RealSR and HR", body)


def _metrics_section(evaluations: dict[str, dict[str, Evaluation]]) -> Section:
    body = [paragraph(f"PSNR (dB) and SSIM on the Y channel of ITU-R BT.601, {SCALE} pixels cropped from each "
                      "side, SSIM with an 11x11 Gaussian window (sigma 1.5): the way SR papers report them "
                      "(`realsr eval`).")]
    for recipe, by_method in evaluations.items():
        first = by_method[METHODS[0]]
        names = first.metric_names
        headers = ["image"] + [f"{METHOD_TITLES[m]} {metric.upper().replace('_', '-')}" for m in METHODS for metric in names]
        rows = [[image.name] + [format_metric(metric, _score(by_method[m], image.name)[metric])
                                for m in METHODS for metric in names] for image in first.images]
        total = ["mean"] + [format_metric(metric, by_method[m].mean[metric]) for m in METHODS for metric in names]
        body += [heading(f"LR made with {recipe}"), table(headers, rows, total)]
    body.append(paragraph(
        "RealSR is trained for perceptual quality (GAN and VGG losses): sharper textures than bicubic, often at a "
        "lower PSNR, as in the paper. Judge the pictures, and LPIPS when shown (lower is better). The DF2K model "
        "was trained on bicubic+noise LR images; kernel+noise LR images, blurred by these photos' own rough "
        "kernels, are outside what it saw, which is why RealSR trains a model per kind of camera."))
    notes = sorted({note for by_method in evaluations.values() for evaluation in by_method.values()
                    for note in evaluation.notes + evaluation.problems})
    body += [paragraph(note, note=True) for note in notes]
    return Section("metrics", "Metrics", body)


def _timings_section(timings: list[StageTime]) -> Section:
    rows = [(t.name, f"{t.seconds:.1f}", t.detail) for t in timings]
    total = ("total", f"{sum(t.seconds for t in timings):.1f}", "")
    return Section("timings", "Timings", [
        table(("stage", "seconds", "what"), rows, total),
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
        "report": str(result.report),
    }
    with atomic_write(path, "w") as file:
        json.dump(summary, file, indent=1)
