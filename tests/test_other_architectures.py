"""Weights that are not an RRDBNet: named in one line when refused (by their state-dict keys), and run
through spandrel on the torch backend when it is installed.

The SRVGGNetCompact here is written from Real-ESRGAN's definition (conv, PReLU, (conv, PReLU) x n,
conv to 3 * s^2 channels, PixelShuffle, plus the nearest-upsampled input), randomly initialised
and tiny; spandrel's output is checked against this forward.
"""
from __future__ import annotations

import builtins
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from realsr_fast import cli
from realsr_fast.errors import RealSRError
from realsr_fast.models.formats import NotRRDBNetError, describe_architecture, load_checkpoint
from realsr_fast.models.rrdbnet import RRDBNet


class TinyCompact(nn.Module):
    """SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4, act_type='prelu') in Real-ESRGAN's key layout."""

    def __init__(self, nf: int = 8, convs: int = 2, scale: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, nf, 3, 1, 1), nn.PReLU(nf)]
        for _ in range(convs):
            layers += [nn.Conv2d(nf, nf, 3, 1, 1), nn.PReLU(nf)]
        layers.append(nn.Conv2d(nf, 3 * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> tuple[TinyCompact, Path]:
    torch.manual_seed(7)
    model = TinyCompact().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.3)  # keep the residual small: outputs stay inside [0, 1] mostly
    path = tmp_path_factory.mktemp("compact") / "compact.pth"
    torch.save({"params": model.state_dict()}, path)
    return model, path


def _without_spandrel(monkeypatch) -> None:
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "spandrel" or name.startswith("spandrel."):
            raise ImportError("no spandrel here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    monkeypatch.setitem(sys.modules, "spandrel", None)  # importlib too, even after another test imported it


@pytest.mark.parametrize("kind,expected", [
    ("compact", "SRVGGNetCompact"),
    ("unshuffle", "pixel-unshuffle x2 RRDBNet"),
    ("swinir", "SwinIR"),
])
def test_refused_files_say_what_they_are_in_one_line(kind, expected, compact, tmp_path, monkeypatch) -> None:
    _without_spandrel(monkeypatch)
    if kind == "compact":
        path = compact[1]
    elif kind == "unshuffle":
        state = RRDBNet(nf=8, nb=1, gc=4).state_dict()
        state["conv_first.weight"] = torch.zeros(8, 12, 3, 3)  # Real-ESRGAN x2plus: pixel-unshuffled input
        path = tmp_path / "x2plus.pth"
        torch.save(state, path)
    else:
        path = tmp_path / "swinir.pth"
        torch.save({"conv_first.weight": torch.zeros(8, 3, 3, 3),
                    "layers.0.residual_group.blocks.0.attn.relative_position_bias_table": torch.zeros(4, 2)}, path)
    with pytest.raises(NotRRDBNetError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert expected in message and "\n" not in message and "pip install spandrel" in message


def test_without_spandrel_the_upscaler_refuses_naming_the_architecture(compact, monkeypatch) -> None:
    from realsr_fast.inference.upscaler import Upscaler

    _without_spandrel(monkeypatch)
    with pytest.raises(RealSRError, match="SRVGGNetCompact"):
        Upscaler(compact[1], device="cpu", backend="torch")


def test_rrdbnets_are_still_read_as_rrdbnets(tmp_path) -> None:
    """spandrel knows ESRGAN too, but an RRDBNet file never goes there."""
    model = RRDBNet(nf=8, nb=1, gc=4)
    torch.save(model.state_dict(), tmp_path / "r.pth")
    assert load_checkpoint(tmp_path / "r.pth")[1] == model.config()
    assert describe_architecture(model.state_dict(), ask_spandrel=False) is None


def test_spandrel_runs_it_on_the_torch_backend_tiled(compact, rng) -> None:
    pytest.importorskip("spandrel", reason="spandrel is not installed (pip install spandrel)")
    from realsr_fast.inference.spandrel_runner import SpandrelRunner
    from realsr_fast.inference.upscaler import Upscaler

    model, path = compact
    upscaler = Upscaler(path, device="cpu", precision="fp32", backend="torch", tile=16, tile_pad=4)
    assert isinstance(upscaler._runner, SpandrelRunner) and upscaler.scale == 4
    x = torch.from_numpy(rng.random((1, 3, 24, 40), dtype=np.float32))
    ours = upscaler.upscale_tensor(x)  # 2 x 3 tiles, stitched by the Upscaler
    with torch.inference_mode():
        reference = model(x).clamp(0, 1)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_spandrel_through_the_cli_with_backend_auto(compact, tmp_path, rng) -> None:
    pytest.importorskip("spandrel", reason="spandrel is not installed (pip install spandrel)")
    Image.fromarray((rng.random((12, 10, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    assert cli.main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", str(compact[1]),
                     "--device", "cpu", "--quiet"]) == 0
    assert Image.open(tmp_path / "out.png").size == (40, 48)
