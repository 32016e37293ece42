"""The demo's report as a user sees it: headless Chromium (Debian's `chromium`, driven by Playwright)
at a desktop width (1280 px) and a phone width (390 px).

Checked at both widths: no console error, no request leaves file:/data:, every image decodes and
is shown at a whole-number magnification, no horizontal scroll; and the comparison slider moves
and shows the two chosen images on each side of the split, pixel for pixel. Screenshots go to
the test's temporary folder.
"""
from __future__ import annotations

import base64
import contextlib
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realsr_fast.demo.pipeline import run_demo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
WIDTHS = (1280, 390)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                       reason="no Chromium at /usr/bin/chromium (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A demo report made with 3 KernelGAN and 2 fine-tuning iterations (as in test_demo)."""
    out = tmp_path_factory.mktemp("demo") / "result"
    run_demo(out, iterations=3, seed=1, device="cpu", progress=False, adapt_iterations=2)
    return out / "report.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium with a new, empty profile."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("profile"), executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield context
        context.close()


@contextlib.contextmanager
def offline_page(browser, path: Path, width: int) -> Iterator[tuple[object, list[str], list[str]]]:
    """`path` opened at `width` px where nothing may leave file:/data: -> (page, console errors,
    requests refused); the page is closed after the block."""
    page = browser.new_page()
    page.set_default_timeout(10_000)
    page.set_viewport_size({"width": width, "height": 900})
    errors, outside = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def route(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    page.goto(path.as_uri(), wait_until="load")
    try:
        yield page, errors, outside
    finally:
        page.close()


@pytest.fixture(params=WIDTHS, ids=lambda width: f"{width}px")
def opened(request, browser, report, tmp_path):
    """The report loaded at one width: (page, width, console errors, requests that left file:/data:)."""
    width = request.param
    with offline_page(browser, report, width) as (page, errors, outside):
        yield page, width, errors, outside
        page.screenshot(path=tmp_path / f"report_{width}px.png")
        if page.locator(".side").count():
            page.locator(".side").first.screenshot(path=tmp_path / f"comparison_{width}px.png")


def test_loads_offline_without_errors(opened):
    page, _, errors, outside = opened
    page.wait_for_load_state("networkidle")
    assert errors == []
    assert outside == []
    assert page.evaluate("[...document.images].every(img => img.src.startsWith('data:image/png;base64,'))")


def test_no_horizontal_scroll(opened):
    page, width, _, _ = opened
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_every_image_decodes_at_a_whole_number_scale(opened):
    page, _, _, _ = opened
    sizes = page.evaluate("""async () => {
        const images = [...document.images];
        await Promise.all(images.map(img => img.decode()));
        return images.filter(img => !img.hidden).map(img => [img.naturalWidth, img.naturalHeight,
                                                             img.clientWidth, img.clientHeight]);
    }""")
    assert len(sizes) > 50
    for natural_w, natural_h, shown_w, shown_h in sizes:
        assert natural_w > 0 and natural_h > 0
        assert shown_w % natural_w == 0 and shown_h % natural_h == 0, (natural_w, natural_h, shown_w, shown_h)
        assert shown_w // natural_w == shown_h // natural_h >= 1


def _layer(page, index: int) -> np.ndarray:
    """Layer `index` of the first slider, decoded from its data URI and magnified as displayed (nearest)."""
    image = page.locator(".compare").first.locator(".layers img").nth(index)
    src, shown = image.get_attribute("src"), int(image.get_attribute("width"))
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
    factor = shown // pixels.shape[1]
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1).astype(np.int16)


def _shown(page) -> np.ndarray:
    """A screenshot of the first slider's box (1 px border included), as `(H, W, 3)`."""
    shot = page.locator(".compare .layers").first.screenshot()
    return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(np.int16)


def _matches(shown: np.ndarray, expected: np.ndarray, columns: slice) -> bool:
    """Whether `shown` holds `expected` in `columns`, below the labels, at the best offset of 0-2 px.

    Searching the offset absorbs the border and the sub-pixel position of the element on the page.
    """
    height, width = expected.shape[:2]
    rows = slice(30, None)
    errors = [float(np.abs(shown[dy:dy + height, dx:dx + width][rows, columns] - expected[rows, columns]).mean())
              for dy in range(3) for dx in range(3)
              if shown.shape[0] >= dy + height and shown.shape[1] >= dx + width]
    return min(errors) < 2.0


def test_slider_moves_and_changes_what_is_shown(opened):
    page, _, _, _ = opened
    box = page.locator(".compare").first
    left, right = box.locator("select").nth(0), box.locator("select").nth(1)
    left_layer, right_layer = int(left.input_value()), int(right.input_value())
    assert left_layer != right_layer
    shown = _shown(page)
    before, after = _layer(page, left_layer), _layer(page, right_layer)
    width = before.shape[1]
    assert not _matches(before, after, slice(0, width))  # the two views differ, or the test could not fail
    assert _matches(shown, before, slice(0, width // 2 - 3)) and _matches(shown, after, slice(width // 2 + 3, width))

    layers = box.locator(".layers")
    bounds = layers.bounding_box()
    page.mouse.move(bounds["x"] + bounds["width"] * 0.5, bounds["y"] + bounds["height"] / 2)
    page.mouse.down()
    page.mouse.move(bounds["x"] + bounds["width"] * 0.2, bounds["y"] + bounds["height"] / 2, steps=4)
    page.mouse.up()
    assert 15 <= int(box.locator("input[type=range]").input_value()) <= 25
    moved = _shown(page)
    assert _matches(moved, after, slice(width // 4 + 3, width))  # the right view now covers 75 %
    assert _matches(moved, before, slice(0, width // 6))

    hr = box.locator(".layers img").count() - 1
    right.select_option(str(hr))
    assert _matches(_shown(page), _layer(page, hr), slice(width // 4 + 3, width))
    box.locator("button").click()
    assert (left.input_value(), right.input_value()) == (str(hr), str(left_layer))
    assert _matches(_shown(page), _layer(page, hr), slice(0, width // 6))
