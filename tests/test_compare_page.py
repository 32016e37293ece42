"""`realsr compare` and `realsr upscale --report`: the comparison page for the user's own files.

The page's contents (sizes, scales, one slider per output size, bicubic beside each result) and
the exit codes (an unwritable page path is exit 2 with one line); test_compare_browser.py opens it
in Chromium.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realsr_fast import cli
from realsr_fast.models import zoo
from realsr_fast.models.formats import save_safetensors
from realsr_fast.models.rrdbnet import RRDBNet
from realsr_fast.report.compare_page import Comparison, Result, write_comparison_page

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """An 80 x 60 photo crop and three 'results' of it: x4 (nearest: blocks, far from bicubic), x2 (Lanczos),
    x2.5 (bilinear, JPEG)."""
    folder = tmp_path_factory.mktemp("compare")
    photo = Image.fromarray(skimage_data.astronaut()[100:160, 180:260])
    photo.save(folder / "in.png")
    photo.resize((320, 240), Image.NEAREST).save(folder / "x4.png")
    photo.resize((160, 120), Image.LANCZOS).save(folder / "x2.png")
    photo.resize((200, 150), Image.BILINEAR).save(folder / "x25.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def page(files) -> Path:
    path = files / "page.html"
    assert cli.main(["compare", str(files / "in.png"), str(files / "x4.png"), str(files / "x2.png"),
                     str(files / "x25.jpg"), "-o", str(path), "--quiet"]) == 0
    return path


def test_page_lists_sizes_and_has_one_slider_per_size(page) -> None:
    text = page.read_text(encoding="utf-8")
    for cell in ("80x60", "320x240", "160x120", "200x150", ">4<", ">2<", ">2.5<"):
        assert cell in text
    assert text.count('class="compare"') == 3
    assert len(re.findall(r'<option value="0"[^>]*>bicubic ', text)) == 6  # bicubic is each slider's first layer


def test_results_of_one_size_share_a_slider(tmp_path) -> None:
    image = np.zeros((10, 12, 3), np.uint8)
    big = np.full((40, 48, 3), 200, np.uint8)
    path = write_comparison_page(tmp_path / "p.html", [Comparison("in", image, [Result("a", big, 1.5), Result("b", big)])])
    text = path.read_text(encoding="utf-8")
    assert text.count('class="compare"') == 1 and "1.50 s" in text


@pytest.mark.parametrize("where", ["missing_folder", "a_file", "a_folder"])
def test_unwritable_page_is_one_line_exit_2(files, tmp_path, capsys, where) -> None:
    (tmp_path / "file").write_text("x")
    target = {"missing_folder": tmp_path / "no" / "p.html", "a_file": tmp_path / "file" / "p.html",
              "a_folder": tmp_path}[where]
    assert cli.main(["compare", str(files / "in.png"), str(files / "x4.png"), "-o", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("realsr compare: error: cannot write the page") and len(err.splitlines()) == 1


def test_missing_result_is_exit_2(files, tmp_path, capsys) -> None:
    assert cli.main(["compare", str(files / "in.png"), str(files / "none.png"), "-o", str(tmp_path / "p.html")]) == 2
    assert "none.png is not a file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(2)
    model = RRDBNet(nf=8, nb=1, gc=4)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_safetensors(path, model.state_dict(), model.config())
    return path


def test_upscale_report_writes_one_page_for_all_inputs(files, tiny_model, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path / "cache"))
    shutil.copy(files / "in.png", tmp_path / "a.png")
    shutil.copy(files / "x2.png", tmp_path / "b.png")
    report = tmp_path / "report.html"
    assert cli.main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "out"),
                     "--model", str(tiny_model), "--backend", "torch", "--device", "cpu", "--quiet",
                     "--report", str(report)]) == 0
    text = report.read_text(encoding="utf-8")
    assert text.count('class="compare"') == 2 and "320x240" in text and "640x480" in text


def test_upscale_report_path_is_checked_before_any_work(files, tiny_model, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert cli.main(["upscale", str(files / "in.png"), "-o", str(out), "--model", str(tiny_model), "--quiet",
                     "--report", str(tmp_path / "no" / "r.html")]) == 2
    assert "cannot write the page" in capsys.readouterr().err and not out.exists()
