"""The report layer's page machinery and pictures (`realsr_fast.report.page`, `.pictures`): images
embedded and escaped text, the slider, bars and marks; the zoom region and the noise picture."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from realsr_fast.report.page import (
    Bar,
    Box,
    Figure,
    Layer,
    Section,
    bar_chart,
    compare,
    gallery,
    paragraph,
    png_data_uri,
    render_report,
    table,
)
from realsr_fast.report.pictures import amplified_noise, busiest_window


def decode_png(uri: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):], validate=True)))
    image.load()
    return image


def test_busiest_window_matches_brute_force(rng):
    image = rng.integers(0, 256, (48, 60, 3), dtype=np.uint8)
    image[:, :30] = 100  # flat left half: the busiest window lies in the right half
    grey = image.astype(np.float64).mean(axis=2)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(grey[:, 1:] - grey[:, :-1])
    energy[1:, :] += np.abs(grey[1:, :] - grey[:-1, :])
    best = max(((energy[y:y + 16, x:x + 16].sum(), (y, x)) for y in range(0, 33, 4) for x in range(0, 45, 4)))
    assert busiest_window(image, 16, 4) == best[1]
    assert busiest_window(image, 16, 4)[1] >= 28


def test_amplified_noise(rng):
    patch = rng.integers(90, 110, (8, 8, 3), dtype=np.uint8)
    out = amplified_noise(patch).astype(np.float64)
    expected = np.clip(128 + 8 * (patch - patch.reshape(-1, 3).mean(axis=0)), 0, 255)
    assert np.abs(out - expected).max() <= 0.5


def test_report_helpers_embed_and_escape(rng):
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(decode_png(png_data_uri(image))), image)
    grey = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    assert np.array_equal(np.asarray(decode_png(png_data_uri(grey))), grey)
    document = render_report("<b>t</b>", [Section("s1", "A & B", [table(["x<y"], [["<script>"]], ["m"]),
                                                                 gallery([Figure(image, "cap\"tion", 10, 3)])])])
    assert "<script>" not in document.split("<body>")[1].split("<script>")[0]  # only the report's own script
    assert "&lt;script&gt;" in document and "A &amp; B" in document
    assert 'width="70" height="50"' in document and 'alt="cap&quot;tion"' in document
    assert "--w: 70px; --n: 21px" in document
    with pytest.raises(ValueError):
        gallery([Figure(image, "half", 0)])
    with pytest.raises(ValueError):
        png_data_uri(np.zeros((4, 4), np.float32))


def test_inline_markup_escapes_first():
    assert paragraph("run `realsr <x>` for **1.5** & more") == (
        '<p>run <code>realsr &lt;x&gt;</code> for <strong class="best">1.5</strong> &amp; more</p>')


def test_compare_shows_two_same_sized_layers(rng):
    small, large = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    layers = [Layer("LR", small, 32), Layer("a", large, 8), Layer("b", large, 8), Layer("HR", large, 8)]
    html = compare(layers, 1, 2)
    images = re.findall(r"<img [^>]*>", html)
    assert len(images) == 4 and all('width="320" height="320"' in image for image in images)
    assert ["hidden" in image for image in images] == [True, False, False, True]
    assert ['class="right"' in image for image in images] == [False, False, True, False]
    assert re.findall(r"<option value=\"(\d)\" selected>", html) == ["1", "2"]
    with pytest.raises(ValueError):
        compare([Layer("LR", small, 8), Layer("a", large, 8)], 0, 1)  # 80 px beside 320 px
    with pytest.raises(ValueError):
        compare(layers, 1, 1)


def test_bar_chart_lengths(rng):
    values = rng.uniform(-3, 3, 6)
    html = bar_chart([Bar(f"b{i}", v, f"{v:+.2f}") for i, v in enumerate(values)], signed=True)
    bars = re.findall(r'class="bar (pos|neg)" style="left: ([0-9.]+)%; width: ([0-9.]+)%"', html)
    largest = np.abs(values).max()
    for (sign, left, width), value in zip(bars, values, strict=True):
        assert sign == ("pos" if value >= 0 else "neg")
        assert float(width) == pytest.approx(50 * abs(value) / largest, abs=0.006)
        assert float(left) == pytest.approx(50 if value >= 0 else 50 - 50 * abs(value) / largest, abs=0.006)
    plain = bar_chart([Bar("a", 2.0, "2 s"), Bar("b", 8.0, "8 s")])
    assert re.findall(r"width: ([0-9.]+)%", plain) == ["25.00", "100.00"]


def test_marks_are_placed_in_percent(rng):
    html = gallery([Figure(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8), "f", 2, 1, [Box(32, 16, 40, 8)])])
    assert 'style="top: 25.000%; left: 25.000%; height: 31.250%; width: 12.500%"' in html
