"""`realsr demo`: it runs end to end, its report holds every section with embedded images, and
what it reports (pairs, scores, timings) agrees with independent computations from its files."""
from __future__ import annotations

import contextlib
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import ndimage
from skimage.metrics import structural_similarity
from test_report_page import decode_png

from realsr_fast.cli import main
from realsr_fast.data.imresize import bicubic_kernel
from realsr_fast.demo.pipeline import SAMPLES_DIR, lr_dir, run_demo, sr_dir
from realsr_fast.demo.records import LR_RECIPES, METHOD_TITLES
from realsr_fast.demo.sections import KERNEL_FLAGS, winners
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image, write_image

SECTIONS = ["overview", "kernels", "noise", "pairs", "comparison", "metrics", "adapted", "timings"]
STAGES = ["noise", "kernels", "pairs", "load model", "RealSR x4", "bicubic x4", "adapt", "adapted x4", "metrics"]
SAMPLE_NAMES = sorted(p.stem for p in SAMPLES_DIR.glob("*.png"))


class ReportParser(HTMLParser):
    """Collects section ids, the images, text and tables of each section, every outward reference and scripts.

    A table is a list of rows, a row a list of `(text, bold)` cells.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, list]] = {}
        self.current: str | None = None
        self.references: list[str] = []
        self.tags: set[str] = set()
        self.scripts: list[dict] = []
        self.styles: dict[str, list[str]] = {}
        self.cell: list | None = None
        self.bold = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.current = attrs["id"]
            self.sections[self.current] = {"images": [], "text": [], "tables": []}
        if tag == "img":
            self.sections[self.current]["images"].append(attrs["src"])
        if tag == "script":
            self.scripts.append(attrs)
        if tag == "table":
            self.sections[self.current]["tables"].append([])
        if tag == "tr":
            self.sections[self.current]["tables"][-1].append([])
        if tag in ("td", "th"):
            self.cell = ["", False]
        if tag == "strong":
            self.bold = True
        if "class" in attrs and "style" in attrs:
            self.styles.setdefault(attrs["class"], []).append(attrs["style"])
        self.references += [attrs[key] for key in ("src", "href") if key in attrs]

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None
        if tag == "strong":
            self.bold = False
        if tag in ("td", "th"):
            self.sections[self.current]["tables"][-1][-1].append(tuple(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.current is not None:
            self.sections[self.current]["text"].append(data)
        if self.cell is not None:
            self.cell[0] += data
            self.cell[1] |= self.bold


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str, ReportParser, dict]:
    """One run of `realsr demo` with very few KernelGAN and fine-tuning iterations: (folder, stdout, parsed
    report, summary)."""
    out = tmp_path_factory.mktemp("demo") / "result"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["demo", "-o", str(out), "--kernel-iters", "3", "--adapt-iterations", "2", "--seed", "1", "--device", "cpu",
                     "--quiet"])
    assert code == 0
    parser = ReportParser()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return out, stdout.getvalue(), parser, summary


@pytest.mark.slow
def test_cli_prints_scores_and_report_path(demo):
    out, stdout, _, summary = demo
    assert f"report: {out / 'report.html'}" in stdout
    for recipe in LR_RECIPES:
        for method in ("realsr", "bicubic"):
            assert f"PSNR-Y {summary['mean'][recipe][method]['psnr_y']:.2f} dB" in stdout


@pytest.mark.slow
def test_report_has_every_section_with_images(demo):
    out, _, parser, _ = demo
    assert list(parser.sections) == SECTIONS
    images = {key: [decode_png(uri) for uri in section["images"]] for key, section in parser.sections.items()}
    assert [im.size for im in images["kernels"]] == [(33, 33)] * len(SAMPLE_NAMES)
    manifest = json.loads((out / "noise" / "manifest.json").read_text())
    assert len(images["noise"]) == 2 * len(manifest["patches"]) > 0  # each patch and its amplified noise
    assert [im.size for im in images["pairs"]] == [(128, 128), (32, 32), (32, 32)] * len(SAMPLE_NAMES)
    # per image and LR recipe: LR, bicubic, RealSR, HR frames, then the same four zoomed crops
    assert len(images["comparison"]) == 8 * len(LR_RECIPES) * len(SAMPLE_NAMES)
    first_row = images["comparison"][:8]
    assert [im.size for im in first_row] == [(32, 32)] + [(128, 128)] * 3 + [(10, 10)] + [(40, 40)] * 3
    recipe = next(iter(LR_RECIPES))
    assert np.array_equal(np.asarray(first_row[0].convert("RGB")), read_image(lr_dir(out, recipe) / f"{SAMPLE_NAMES[0]}.png"))
    realsr_frame = np.asarray(first_row[2].convert("RGB"))
    assert np.array_equal(realsr_frame, read_image(sr_dir(out, recipe, "realsr") / f"{SAMPLE_NAMES[0]}.png"))
    text = " ".join(parser.sections["overview"]["text"])
    assert "3 iterations per photo instead of the official 3000" in text


@pytest.mark.slow
def test_report_is_self_contained(demo):
    out, _, parser, _ = demo
    assert not parser.tags & {"link", "iframe", "object", "embed"}
    assert parser.scripts == [{}]  # one inline script (the sliders), nothing loaded
    files = []
    for reference in parser.references:
        if not reference.startswith(("data:image/png;base64,", "#")):
            files.append(reference)
            assert ":" not in reference and not reference.startswith("/"), reference  # relative, no scheme
            assert (out / reference).exists(), reference
    assert files == ["noise/", "kernels/", "pairs/", "sr/", "summary.json"]
    anchors = [r[1:] for r in parser.references if r.startswith("#")]
    assert anchors == SECTIONS


@pytest.mark.slow
def test_outputs_on_disk(demo):
    out, _, _, _ = demo
    for name in SAMPLE_NAMES:
        assert (out / "kernels" / name / f"{name}_kernel_x4.mat").is_file()
        assert read_image(out / "pairs" / "HR" / f"{name}.png").shape == (128, 128, 3)
        for recipe in LR_RECIPES:
            assert read_image(lr_dir(out, recipe) / f"{name}.png").shape == (32, 32, 3)
            for method in ("realsr", "bicubic"):
                assert read_image(sr_dir(out, recipe, method) / f"{name}.png").shape == (128, 128, 3)
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.slow
def test_lr_is_blur_stride_and_real_noise(demo):
    """Each LR file equals clamp((HR * k)[::4, ::4] + noise crop - its mean), written from the spec."""
    out, _, _, summary = demo
    assert list(summary["pairs"]) == list(LR_RECIPES)
    checked = [(recipe, name, choices) for recipe, pairs in summary["pairs"].items() for name, choices in pairs.items()]
    assert len(checked) == len(LR_RECIPES) * len(SAMPLE_NAMES)
    for recipe, name, choices in checked:
        hr = read_image(out / "pairs" / "HR" / f"{name}.png").astype(np.float64) / 255
        if recipe.startswith("bicubic"):
            assert choices["kernel"] == "bicubic"
            kernel = bicubic_kernel(4).double().numpy()  # imresize(x, 1/4) as a kernel: tested in test_imresize
        else:
            kernel = np.load(Path(choices["kernel"]).with_suffix(".npy"))
        kernel = kernel / kernel.sum()
        noise = read_image(choices["noise"]).astype(np.float64) / 255
        oy, ox = choices["noise_offset"]
        crop = noise[oy:oy + 32, ox:ox + 32]
        blurred = np.stack([ndimage.correlate(hr[..., c], kernel, mode="reflect") for c in range(3)], axis=-1)
        expected = np.clip(blurred[::4, ::4] + crop - crop.mean(axis=(0, 1)), 0, 1) * 255
        lr = read_image(lr_dir(out, recipe) / f"{name}.png").astype(np.float64)
        assert np.abs(lr - expected).max() <= 0.5 + 1e-3, (recipe, name)


def y_channel(image: np.ndarray) -> np.ndarray:
    """BT.601 luma on 16..235 from a uint8 RGB image, float64 (MATLAB rgb2ycbcr without rounding)."""
    rgb = image.astype(np.float64)
    return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255


@pytest.mark.slow
def test_scores_match_scikit_image(demo):
    out, _, parser, summary = demo
    metrics_text = [text.strip() for text in parser.sections["metrics"]["text"]]
    comparison_text = "".join(parser.sections["comparison"]["text"])
    for recipe in LR_RECIPES:
        for method in ("realsr", "bicubic"):
            for name in SAMPLE_NAMES:
                sr = y_channel(read_image(sr_dir(out, recipe, method) / f"{name}.png"))[4:-4, 4:-4]
                hr = y_channel(read_image(out / "pairs" / "HR" / f"{name}.png"))[4:-4, 4:-4]
                psnr = 10 * np.log10(255**2 / np.mean((sr - hr) ** 2))
                ssim = structural_similarity(sr, hr, data_range=255, gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False)
                scores = summary["scores"][recipe][method][name]
                assert scores["psnr_y"] == pytest.approx(psnr, abs=1e-9)
                assert scores["ssim_y"] == pytest.approx(ssim, abs=1e-6)
                assert f"{scores['psnr_y']:.2f}" in metrics_text and f"{scores['ssim_y']:.4f}" in metrics_text
                assert f"PSNR-Y {scores['psnr_y']:.2f} dB\nSSIM-Y {scores['ssim_y']:.4f}" in comparison_text
            assert f"{summary['mean'][recipe][method]['psnr_y']:.2f}" in metrics_text


@pytest.mark.slow
def test_timings_cover_every_stage(demo):
    _, _, parser, summary = demo
    assert list(summary["timings_s"]) == STAGES
    timings = summary["timings_s"]
    assert all(seconds >= 0 for seconds in timings.values())  # rounded to ms: fast stages can read 0
    # KernelGAN and the full-size RRDBNet take whole seconds on any CPU: a stage timer that is
    # never started or stopped in the wrong place reads 0 or the whole run here
    assert timings["kernels"] > 0.05 and timings["RealSR x4"] > 0.05
    assert timings["RealSR x4"] < sum(timings.values())
    text = parser.sections["timings"]["text"]
    values = [re.fullmatch(r"([0-9.]+) (s|ms) \([0-9]+ %\)", t) for t in text]
    shown = [float(m[1]) / (1000 if m[2] == "ms" else 1) for m in values if m]
    assert len(shown) == len(STAGES) and all(stage in text for stage in STAGES)
    for seconds, value in zip(summary["timings_s"].values(), shown, strict=True):  # summary: rounded to ms; page: 0.1 s or 1 ms
        assert abs(value - seconds) <= (0.05 if seconds >= 1 else 0.0005) + 0.0006, (seconds, value)
    # one bar per stage, its length the stage's share of the longest
    widths = [float(re.search(r"width: ([0-9.]+)%", style)[1]) for style in parser.styles["bar"]]
    longest = max(summary["timings_s"].values())
    # the page draws unrounded seconds to 0.01 %; summary.json rounds them to the ms
    tolerance = 0.006 + 100 * 2 * 0.0005 / longest
    assert widths == pytest.approx([100 * s / longest for s in summary["timings_s"].values()], abs=tolerance)
    assert any("total" in t for t in text)


@pytest.mark.slow
def test_metrics_tables_deltas_and_winners(demo):
    """Every score cell, Δ cell and bold winner agrees with summary.json; the Δ bars are the per-image deltas."""
    _, _, parser, summary = demo
    tables = parser.sections["metrics"]["tables"]
    assert len(tables) == len(LR_RECIPES)
    deltas = []
    for recipe, rows in zip(LR_RECIPES, tables, strict=True):
        header = [text for text, _ in rows[0]]
        assert header == ["image", "PSNR-Y (dB) bicubic x4", "PSNR-Y (dB) RealSR x4", "Δ PSNR-Y (dB) RealSR x4",
                          "SSIM-Y (0-1) bicubic x4", "SSIM-Y (0-1) RealSR x4", "Δ SSIM-Y (0-1) RealSR x4"]
        assert [row[0][0] for row in rows[1:]] == SAMPLE_NAMES + ["mean"]
        for row in rows[1:]:
            name = row[0][0]
            source = summary["mean"][recipe] if name == "mean" else {
                m: summary["scores"][recipe][m][name] for m in ("bicubic", "realsr")}
            for offset, (metric, digits) in zip((1, 4), (("psnr_y", 2), ("ssim_y", 4)), strict=True):
                bicubic, realsr = source["bicubic"][metric], source["realsr"][metric]
                assert row[offset][0] == f"{bicubic:.{digits}f}" and row[offset + 1][0] == f"{realsr:.{digits}f}"
                assert float(row[offset + 2][0]) == pytest.approx(realsr - bicubic, abs=0.6 * 10**-digits)
                assert row[offset][1] == (bicubic > realsr) and row[offset + 1][1] == (realsr > bicubic)
                if name != "mean":
                    deltas.append((metric, realsr - bicubic))
    widths = [float(re.search(r"width: ([0-9.]+)%", style)[1]) for style in parser.styles["bar pos"] +
              parser.styles["bar neg"]]
    assert len(deltas) == 2 * len(LR_RECIPES) * len(SAMPLE_NAMES)
    # the adapted section's charts: PSNR-Y and SSIM-Y, RealSR and adapted minus bicubic, per held-out photo
    assert len(widths) == len(deltas) + 2 * 2 * len(summary["adapted"]["held_out"])
    for metric in ("psnr_y", "ssim_y"):  # a chart per metric: the largest |Δ| spans half the track
        largest = max(abs(d) for m, d in deltas if m == metric)
        expected = sorted(round(50 * abs(d) / largest, 2) for m, d in deltas if m == metric)
        assert all(any(abs(w - e) <= 0.01 for w in widths) for e in expected)


@pytest.mark.slow
def test_noise_and_kernels_are_explained(demo):
    out, _, parser, _ = demo
    manifest = json.loads((out / "noise" / "manifest.json").read_text())
    rows = parser.sections["noise"]["tables"][0]
    noise_text = " ".join(parser.sections["noise"]["text"])
    for row, (photo, info) in zip(rows[1:], manifest["photos"].items(), strict=True):
        assert row[0][0] == Path(photo).stem and int(row[2][0]) == info["kept"]
        assert (f"{row[0][0]} kept none: " in noise_text) == (info["kept"] == 0)  # a reason where nothing was kept
    sources = {Path(entry["source"]).stem for entry in manifest["patches"]}
    if len(sources) < len(SAMPLE_NAMES):
        assert f"Only {len(sources)} of the {len(SAMPLE_NAMES)} photos" in noise_text
    assert "grey levels²" in noise_text
    kernel_text = " ".join(parser.sections["kernels"]["text"])
    flags = {flag for name in SAMPLE_NAMES
             for flag in json.loads((out / "kernels" / name / f"{name}_report.json").read_text())["flags"]}
    assert flags  # 3 iterations: at least "not converged"
    for flag in flags:
        assert f"{flag}: {KERNEL_FLAGS[flag]}" in kernel_text


@pytest.mark.slow
def test_adapted_column_is_trained_without_the_held_out_photo(demo):
    """The adapted model never saw a crop of the held-out photo; its column is scored on that photo alone,
    beside bicubic and the official model, and the scores agree with an independent computation."""
    out, stdout, parser, summary = demo
    adapted = summary["adapted"]
    train, held_out = adapted["train"], adapted["held_out"]
    assert sorted(train + held_out) == SAMPLE_NAMES and len(held_out) == 1 and not set(train) & set(held_out)
    assert adapted["iterations"] == 2 and [row["iteration"] for row in adapted["curve"]] == [0, 2]
    # what the Trainer read: the training photos' HR only (the run's own record of its settings)
    config = yaml.safe_load((out / "adapt" / "run" / "config.yaml").read_text())
    assert Path(config["data"]["hr"]) == out / "adapt" / "train" and config["optim"]["iterations"] == 2
    assert sorted(p.stem for p in (out / "adapt" / "train").iterdir()) == train
    for name in train:
        assert np.array_equal(read_image(out / "adapt" / "train" / f"{name}.png"), read_image(out / "pairs" / "HR" / f"{name}.png"))
    assert not (out / "adapt" / "run" / "checkpoints").exists()  # 190 MB the demo never resumes from
    assert sorted(p.stem for p in sr_dir(out, "kernel+noise", "adapted").iterdir()) == held_out
    assert not sr_dir(out, "bicubic+noise", "adapted").exists()

    name = held_out[0]
    hr = y_channel(read_image(out / "pairs" / "HR" / f"{name}.png"))[4:-4, 4:-4]
    images = {m: read_image(sr_dir(out, "kernel+noise", m) / f"{name}.png") for m in ("bicubic", "realsr", "adapted")}
    assert not np.array_equal(images["adapted"], images["realsr"])  # fine-tuning changed the model
    for method, image in images.items():
        psnr = 10 * np.log10(255**2 / np.mean((y_channel(image)[4:-4, 4:-4] - hr) ** 2))
        assert adapted["scores"][method][name]["psnr_y"] == pytest.approx(psnr, abs=1e-9)
        assert adapted["mean"][method]["psnr_y"] == pytest.approx(psnr, abs=1e-9)
        if method != "adapted":
            assert summary["scores"]["kernel+noise"][method][name]["psnr_y"] == pytest.approx(psnr, abs=1e-9)
        line = f"held out ({name}), LR kernel+noise {METHOD_TITLES[method]:>10}: PSNR-Y {psnr:.2f} dB"
        assert line in stdout

    section = parser.sections["adapted"]
    text = "".join(section["text"])
    assert f"on crops of {', '.join(train)}" in text and f"Held out: {name};" in text
    header = [cell for cell, _ in section["tables"][0][0]]
    assert header[:4] == ["image", "PSNR-Y (dB) bicubic x4", "PSNR-Y (dB) RealSR x4", "PSNR-Y (dB) adapted x4"]
    rows = section["tables"][0][1:]
    assert [row[0][0] for row in rows] == [name, "mean"]
    assert [cell for cell, _ in rows[0][1:4]] == [f"{adapted['scores'][m][name]['psnr_y']:.2f}"
                                                for m in ("bicubic", "realsr", "adapted")]
    # per LR recipe and held-out photo: LR, the three methods and HR, framed then zoomed
    assert len(section["images"]) == 2 * 5


def test_adapt_settings_refused_before_any_work(tmp_path):
    with pytest.raises(RealSRError, match="--adapt-iterations must be 0"):
        run_demo(tmp_path / "out", adapt_iterations=-1, progress=False)
    photos = tmp_path / "photos"
    write_image(photos / "only.png", np.full((96, 96, 3), 128, np.uint8))
    with pytest.raises(RealSRError, match="needs 2 photos or more.*--adapt-iterations 0"):
        run_demo(tmp_path / "out", samples_dir=photos, progress=False)
    assert not (tmp_path / "out").exists()


def test_no_noise_patch_fails_before_kernelgan(tmp_path, rng):
    photos = tmp_path / "photos"
    for name in ("a", "b"):
        write_image(photos / f"{name}.png", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    with pytest.raises(RealSRError, match="no noise patch qualified"):
        run_demo(tmp_path / "out", iterations=1, samples_dir=photos, progress=False)
    assert not (tmp_path / "out" / "kernels").exists()


def test_small_photo_and_output_in_samples_refused(tmp_path):
    photos = tmp_path / "photos"
    write_image(photos / "tiny.png", np.full((40, 200, 3), 128, np.uint8))
    with pytest.raises(RealSRError, match="tiny.png.*KernelGAN needs at least"):
        run_demo(tmp_path / "out", samples_dir=photos, progress=False)
    with pytest.raises(RealSRError, match="is a source folder"):
        run_demo(photos, samples_dir=photos, progress=False)
    assert not (tmp_path / "out").exists()


def test_winners_need_a_strict_best():
    scores = {"bicubic": {"psnr_y": 20.0, "lpips": 0.3}, "realsr": {"psnr_y": 21.0, "lpips": 0.2},
              "adapted": {"psnr_y": 21.0, "lpips": 0.4}}
    assert winners(scores, "psnr_y") == set()  # a tie: nobody is highlighted
    assert winners(scores, "lpips") == {"realsr"}  # lower is better
    assert winners({m: scores[m] for m in ("bicubic", "adapted")}, "psnr_y") == {"adapted"}
