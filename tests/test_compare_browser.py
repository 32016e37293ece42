"""The comparison page (`realsr compare`) as a user sees it: headless Chromium at 1280 and 390 px,
checked as the demo report is in test_report_browser.py (whose helpers this reuses): no console
error, nothing fetched from outside, no horizontal scroll, every image at a whole-number
magnification, and a slider that moves and shows bicubic and the result on each side of the split.
Screenshots go to the test's temporary folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_compare_page import files, page  # noqa: F401 (fixtures)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="no Chromium at /usr/bin/chromium (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
from test_report_browser import _layer, _matches, _shown, browser, offline_page  # noqa: E402, F401 (after the skip; a fixture)


@pytest.fixture(params=(1280, 390), ids=lambda width: f"{width}px")
def opened(request, browser, page, tmp_path):  # noqa: F811 (the imported fixtures)
    """The page at one width: (tab, width, console errors, requests that left file:/data:)."""
    width = request.param
    with offline_page(browser, page, width) as (tab, errors, outside):
        yield tab, width, errors, outside
        tab.screenshot(path=tmp_path / f"compare_{width}px.png", full_page=True)


def test_loads_offline_without_errors(opened):
    tab, _, errors, outside = opened
    tab.wait_for_load_state("networkidle")
    assert errors == [] and outside == []


def test_no_horizontal_scroll(opened):
    tab, width, _, _ = opened
    assert tab.evaluate("document.documentElement.scrollWidth") <= width


def test_every_image_at_a_whole_number_scale(opened):
    tab, _, _, _ = opened
    sizes = tab.evaluate("""async () => {
        const images = [...document.images];
        await Promise.all(images.map(img => img.decode()));
        return images.filter(img => !img.hidden).map(img => [img.naturalWidth, img.naturalHeight,
                                                             img.clientWidth, img.clientHeight]);
    }""")
    assert len(sizes) == 9  # per output size: the input frame and the slider's two visible layers
    for natural_w, natural_h, shown_w, shown_h in sizes:
        assert shown_w % natural_w == 0 and shown_h % natural_h == 0, (natural_w, natural_h, shown_w, shown_h)
        assert shown_w // natural_w == shown_h // natural_h >= 1


def test_slider_moves_between_bicubic_and_the_result(opened):
    tab, _, _, _ = opened
    box = tab.locator(".compare").first
    bicubic, result = _layer(tab, 0), _layer(tab, 1)
    width = bicubic.shape[1]
    assert not _matches(bicubic, result, slice(0, width))
    shown = _shown(tab)
    assert _matches(shown, bicubic, slice(0, width // 2 - 3)) and _matches(shown, result, slice(width // 2 + 3, width))
    bounds = box.locator(".layers").bounding_box()
    tab.mouse.move(bounds["x"] + bounds["width"] * 0.5, bounds["y"] + bounds["height"] / 2)
    tab.mouse.down()
    tab.mouse.move(bounds["x"] + bounds["width"] * 0.2, bounds["y"] + bounds["height"] / 2, steps=4)
    tab.mouse.up()
    assert 15 <= int(box.locator("input[type=range]").input_value()) <= 25
    moved = _shown(tab)
    assert _matches(moved, result, slice(width // 4 + 3, width)) and _matches(moved, bicubic, slice(0, width // 6))
    box.locator("button").click()
    assert _matches(_shown(tab), result, slice(0, width // 6))
