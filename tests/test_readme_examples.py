"""The README's Python code blocks, run as they are written.

Each block runs in a fresh namespace from a temporary folder that mirrors the paths it names
(the sample photo is replaced by a 24x24 crop of itself, so the full-size default model takes
about a second on the CPU); the weights cache is a temporary folder too.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.DOTALL | re.MULTILINE)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 2
    assert any("from realsr_fast import Upscaler" in b for b in BLOCKS)
    assert any("ops.degrade" in b for b in BLOCKS)


def _run(block: str, tmp_path: Path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REALSR_FAST_HOME", str(tmp_path / "cache"))
    for name in re.findall(r'"(realsr_fast/samples/[\w.]+)"', block):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        with Image.open(ROOT / name) as im:
            im.crop((40, 40, 64, 64)).save(tmp_path / name)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - running the README is the point
    return namespace


@pytest.mark.slow  # converts the ncnn weights of the default model into the (fresh) cache: seconds
def test_upscaler_example(tmp_path, monkeypatch):
    block = next(b for b in BLOCKS if "from realsr_fast import Upscaler" in b)
    ns = _run(block, tmp_path, monkeypatch)
    assert ns["image"].shape == (24, 24, 3) and ns["image"].dtype == np.uint8
    with Image.open(tmp_path / "astronaut_x4.png") as out:
        result = np.asarray(out.convert("RGB"))
    assert result.shape == (96, 96, 3)
    # an x4 of the photo: its 4x4 block means follow the input closely (not blank, not shifted)
    blocks = result.astype(float).reshape(24, 4, 24, 4, 3).mean(axis=(1, 3))
    assert np.abs(blocks - ns["image"]).mean() < 12 and result.std() > 10


def test_ops_example(tmp_path, monkeypatch):
    block = next(b for b in BLOCKS if "ops.degrade" in b)
    ns = _run(block, tmp_path, monkeypatch)
    assert ns["lr"].shape == (16, 3, 32, 32) and ns["lr"].dtype == torch.float32
    assert torch.equal(ns["lr"] * 255, torch.round(ns["lr"] * 255))  # quantize=True as written
    assert ns["mean"].shape == ns["var"].shape == (16, 3, 3)
