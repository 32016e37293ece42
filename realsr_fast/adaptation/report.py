"""The adapt run's outputs: `curve.png`, `report.html` (:mod:`realsr_fast.report`) and `summary.json`."""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from realsr_fast.adaptation.scoring import BaseChoice
from realsr_fast.data.kernel_bank import load_kernel_bank
from realsr_fast.data.noise_bank import load_noise_bank
from realsr_fast.data.split import Roles
from realsr_fast.io import atomic_write, tensor_to_image, write_json
from realsr_fast.kernel_estimation.fallback import FALLBACK_SIGMA, KernelChoice
from realsr_fast.models.loading import load_model
from realsr_fast.report.page import Figure, Layer, Section, compare, gallery, paragraph, table, write_report
from realsr_fast.report.pictures import amplified_noise, kernel_image
from realsr_fast.train.config import TrainConfig
from realsr_fast.train.finetune import MODEL_NAME, FineTuneResult

MAX_SHOWN = 8  # kernels, noise patches and held-out photos shown in the report


@dataclass(frozen=True)
class FinishedRun:
    """What a finished (or stopped) `realsr adapt` run used and made, for its outputs.

    `kernels` holds the estimates; training read `config.data.kernels`, made from the training
    photos' ones as `kernel_choices` say (`left_out`: the validation and test photos' estimates);
    `noise_source` says what made the noise bank `noise`; `test` holds the test photos and their
    `scores` per model, or `why` there are none; `minutes` is the time budget (None: none).
    """

    config: TrainConfig
    result: FineTuneResult
    roles: Roles
    base: BaseChoice
    kernels: Path
    kernel_choices: Sequence[KernelChoice]
    left_out: Sequence[str]
    noise: Path
    noise_source: dict
    test: dict
    minutes: float | None


@dataclass
class OutputPaths:
    """Where :func:`write_outputs` wrote the run's files."""

    report: Path
    summary: Path
    curve: Path


def write_outputs(out: Path, run: FinishedRun) -> OutputPaths:
    """Write `out/curve.png`, `out/report.html` and `out/summary.json` for `run`."""
    paths = OutputPaths(out / "report.html", out / "summary.json", out / "curve.png")
    curve_png = plot_curve(run.result.curve)
    with atomic_write(paths.curve) as file:
        file.write(curve_png)
    write_json(paths.summary, _summary(run))
    write_report(paths.report, "RealSR adapt", _sections(out, run, curve_png), subtitle=test_line(run.test))
    return paths


def _summary(run: FinishedRun) -> dict:
    """The contents of `summary.json`: photos, choices, the learning curve, settings and kernels."""
    config, result, choices = run.config, run.result, run.kernel_choices
    start, best, last = result.curve[0], result.best, result.curve[-1]
    return {
        "photos": {"train": list(run.roles.train), "validation": list(run.roles.val), "test": list(run.roles.test)},
        "test": run.test, "base": asdict(run.base), "noise": run.noise_source,
        "mode": config.loss.mode, "iterations": result.iteration, "seconds": round(result.seconds, 1),
        "minutes_budget": run.minutes, "interrupted": result.interrupted, "model": MODEL_NAME,
        "start": start, "best": best, "last": last,
        "gain_db": round(best["psnr"] - start["psnr"], 4), "curve": result.curve,
        "settings": {"lr_g": config.optim.lr_g, "patch": config.data.patch, "batch": config.data.batch,
                     "init": config.generator.init, "device": config.run.device, "kernels": config.data.kernels,
                     "kernel_estimates": str(run.kernels), "noise": str(run.noise)},
        "kernels": {"fallback": f"isotropic Gaussian, sigma {FALLBACK_SIGMA} px at x2 (its analytic x4 kernel)",
                    "left_out": list(run.left_out),
                    "fell_back": [c.photo for c in choices if c.used == "fallback"],
                    "trust_checked": any(c.trust != "not checked" for c in choices),
                    "photos": [asdict(c) for c in choices]},
    }


def _sections(out: Path, run: FinishedRun, curve_png: bytes) -> list[Section]:
    """The report's sections: test, choices, validation scores, curve, before / after, kernels and noise."""
    config, result, left_out = run.config, run.result, run.left_out
    train, held_out = run.roles.train, run.roles.val
    start, best, last = result.curve[0], result.best, result.curve[-1]
    metrics = [name for name in ("psnr", "ssim", "lpips") if name in start]
    rows = [[label, f"{row['iteration']}"] + [f"{row[m]:.4f}" for m in metrics]
            for label, row in (("starting model", start), ("best (model.safetensors)", best), ("last", last))]
    return [
        Section("test", "Test photos (never used for a choice)", _test_section(run.test, config.generator.scale)),
        Section("choices", "Starting model and noise", [
            paragraph(f"Starting model: {run.base.chosen}, {run.base.why}."),
            paragraph(f"Noise: {run.noise_source.get('description', run.noise_source.get('source'))}."),
            paragraph("Validation and test LR are made with the kernels and noise of the training photos only"
                      + (f" (the estimates of {', '.join(left_out)} are left out)." if left_out else "."))]),
        Section("scores", "Validation scores (choose the checkpoint)", [
            paragraph(f"{len(train)} photos trained on, {len(held_out)} for validation ({', '.join(held_out)}); "
                      f"{config.loss.mode.upper()} mode, {result.iteration} iterations in {result.seconds / 60:.1f} min. "
                      f"PSNR-Y / SSIM-Y with a {config.generator.scale}-pixel border, on LR made from the validation "
                      "HR with the training photos' kernels and noise."),
            table(["model", "iteration"] + [f"{m.upper()}-Y" if m != "lpips" else "LPIPS" for m in metrics], rows)]),
        Section("curve", "Learning curve", [gallery([Figure(_decode_png(curve_png), "validation PSNR-Y per validation step")])]),
        Section("compare", "Before / after on validation photos", _comparisons(out, config, result)),
        Section("camera", "Kernels and noise", _kernel_trust(run.kernel_choices)
                + _camera_figures(Path(config.data.kernels), run.noise, config.generator.scale)),
    ]


def test_line(test: dict) -> str:
    """One line: PSNR-Y of each model on the test photos, or why there is no test score."""
    if "scores" not in test:
        return test["why"]
    listed = " / ".join(f"{name} {row['psnr']:.2f}" for name, row in test["scores"].items())
    return f"test PSNR-Y ({test['images']} photo(s), never used for a choice): {listed} dB"


def _test_section(test: dict, scale: int) -> list[str]:
    if "scores" not in test:
        return [paragraph(test["why"], note=True)]
    metrics = [m for m in ("psnr", "ssim", "lpips") if all(m in row for row in test["scores"].values())]
    rows = [[name] + [f"{row[m]:.4f}" for m in metrics] for name, row in test["scores"].items()]
    return [paragraph(f"Test photos: {', '.join(test['photos'])}. PSNR-Y / SSIM-Y with a {scale}-pixel border, on LR "
                      "made from their HR with the training photos' kernels and noise; no choice (starting model, "
                      "checkpoint) read them."),
            table(["model"] + [f"{m.upper()}-Y" if m != "lpips" else "LPIPS" for m in metrics], rows)]


def plot_curve(curve: list[dict[str, float]]) -> bytes:
    """PNG bytes of validation PSNR-Y against iteration, the starting model as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    axis.plot([row["iteration"] for row in curve], [row["psnr"] for row in curve], "o-", label="fine-tuned")
    axis.axhline(curve[0]["psnr"], linestyle="--", color="grey", label="starting model")
    axis.set_xlabel(f"iteration (last at {curve[-1]['seconds'] / 60:.1f} min)")
    axis.set_ylabel("validation PSNR-Y (dB)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@torch.no_grad()
def _comparisons(out: Path, config: TrainConfig, result: FineTuneResult) -> list[str]:
    """A slider per validation photo: LR (nearest), starting model, adapted model, HR."""
    scale = config.generator.scale
    models = {"starting model": load_model(config.generator.init) if config.generator.init else None,
              "adapted": load_model(out / MODEL_NAME)}
    blocks = []
    for pair in result.validation[:MAX_SHOWN]:
        lr = pair.lr.float().cpu()
        layers = [Layer("LR", tensor_to_image(lr), scale)]
        for label, model in models.items():
            if model is not None:
                layers.append(Layer(label, tensor_to_image(model.eval()(lr)), 1))
        layers.append(Layer("HR", pair.hr[0].permute(1, 2, 0).cpu().numpy(), 1))
        blocks.append(compare(layers, 1, 2 if len(layers) > 3 else len(layers) - 1, caption=pair.name))
    return blocks or [paragraph("no validation images")]


def _kernel_trust(choices: Sequence[KernelChoice]) -> list[str]:
    """Which photos' estimates training used and which fell back to the constant kernel, and why."""
    fell_back = [c.photo for c in choices if c.used == "fallback"]
    if not any(c.trust != "not checked" for c in choices):
        summary = ("Trust in the kernel estimates was not checked (one KernelGAN run per photo; `--seeds 2` or more "
                   "compares runs, the spectral method compares two halves of each photo): every estimate is used "
                   "as it is.")
    elif fell_back:
        summary = (f"{len(fell_back)} of {len(choices)} estimates were not trusted (their KernelGAN runs, or the "
                   "spectral fits to their two halves, disagree) and "
                   f"are not trained on: {', '.join(fell_back)} use the fallback, an isotropic Gaussian of sigma "
                   f"{FALLBACK_SIGMA} px at x2 (the best constant kernel of the kernel yardstick, docs/kernel_prior.md).")
    else:
        summary = "Every estimate was trusted (its KernelGAN runs, or its spectral half-fits, agree) and is used."
    rows = [[c.photo, c.used, c.trust, c.why] for c in choices[:MAX_SHOWN * 4]]
    return [paragraph(summary, note=bool(fell_back)), table(["photo", "kernel used", "trust", "why"], rows)]


def _camera_figures(kernels: Path, noise: Path, scale: int) -> list[str]:
    bank = load_kernel_bank(kernels, scale)
    kernel_figures = [Figure(kernel_image(k.numpy()), path.parent.name if path.parent != kernels else path.stem, scale=4)
                      for k, path in zip(bank.kernels[:MAX_SHOWN], bank.files)]
    patches = load_noise_bank(noise)
    noise_figures = [Figure(amplified_noise(p.permute(1, 2, 0).numpy()), path.stem)
                     for p, path in zip(patches.patches[:MAX_SHOWN], patches.files)]
    return [paragraph(f"{len(bank.files)} kernels from {kernels}:"), gallery(kernel_figures),
            paragraph(f"{len(patches.files)} noise patches from {noise} (amplified):"), gallery(noise_figures)]
