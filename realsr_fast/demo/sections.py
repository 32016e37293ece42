"""The sections of the demo's report: overview, kernels, noise, pairs, comparison, metrics, the
adapted model and timings, built from the demo's output folder and the records of its run.

Images in them are `(H, W, 3)` uint8 (kernels `(33, 33)` grey), shown at whole-number
magnifications (:mod:`realsr_fast.report.page`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from realsr_fast.batch import to_rgb8
from realsr_fast.data.kernel_files import kernel_paths, load_kernel
from realsr_fast.demo.adapted import AdaptedModel
from realsr_fast.demo.records import (
    ADAPTED_METHODS,
    ADAPTED_RECIPE,
    LR_RECIPES,
    METHOD_TITLES,
    METHODS,
    SCALE,
    DemoResult,
    Outputs,
    Pairs,
    StageTime,
)
from realsr_fast.evaluate import Evaluation
from realsr_fast.io import read_image
from realsr_fast.report.page import (
    Bar,
    Box,
    Figure,
    Html,
    Layer,
    Section,
    bar_chart,
    bullets,
    compare,
    gallery,
    heading,
    link,
    paragraph,
    side_by_side,
    table,
)
from realsr_fast.report.pictures import NOISE_GAIN, amplified_noise, busiest_window, kernel_image

ZOOM = 40
"""Side of the zoomed HR crop (a multiple of SCALE)."""
ZOOM_SCALE = 8
"""Magnification of the zoomed crops (the LR crop: ZOOM_SCALE * SCALE), larger than the frames'."""
FRAME_SCALE, NARROW_FRAME_SCALE = 2, 1
"""Magnification of the HR-sized frames on wide screens and on phones (LR frames: times SCALE)."""
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


def report_sections(out: Path, names: list[str], pairs: Pairs, outputs: Outputs, result: DemoResult,
                    settings: dict, methods: Sequence[str] = METHODS) -> list[Section]:
    """The report's sections: overview, kernels, noise, pairs, comparison, metrics, the adapted model
    (when `result` has one) and timings.

    `out` is the demo's output folder (its `kernels/` and `noise/` are read), `names` the photos'
    stems, `settings` the run's as `summary.json` keeps them. `methods` are compared in this order;
    the first is the baseline that differences are taken from.
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
    """One line per metric of `method`'s scores (the metric's name, the score, its unit), the best of
    `scores` in bold."""
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
