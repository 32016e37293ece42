"""--strength (#30 point 4): network interpolation between a PSNR model and a GAN model of one shape.

Two tiny random RRDBNets stand in for esrgan-psnr and df2k: strength 0 and 1 are the two models
exactly, 0.5 is the numpy interpolation of every weight, the base is never read at strength 1,
every backend (ncnn through an exported pair) runs the blend, and what cannot work says so in one
line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realsr_fast import cli, download
from realsr_fast.errors import RealSRError
from realsr_fast.inference.backends import UpscalerSettings, with_strength_applied
from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.models.formats import load_checkpoint, save_safetensors
from realsr_fast.models.interpolate import interpolate_state
from realsr_fast.models.loading import load_model
from realsr_fast.models.rrdbnet import RRDBNet

TINY = {"in_nc": 3, "out_nc": 3, "nf": 4, "nb": 1, "gc": 4, "scale": 4}


def random_weights(path: Path, seed: int, **config) -> Path:
    config = {**TINY, **config}
    torch.manual_seed(seed)
    model = RRDBNet(**config)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    with torch.no_grad():
        model.conv_last.bias.fill_(0.5)  # mid-grey output, so that clamping hides nothing
    save_safetensors(path, model.state_dict(), config)
    return path


@pytest.fixture
def pair(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(gan, psnr) weight files of the same shape; the cache in tmp_path."""
    monkeypatch.setenv("REALSR_FAST_HOME", str(tmp_path / "cache"))
    return random_weights(tmp_path / "gan.safetensors", 1), random_weights(tmp_path / "psnr.safetensors", 2)


def numpy_blend(psnr: Path, gan: Path, s: float) -> dict[str, np.ndarray]:
    a, _ = load_checkpoint(psnr)
    b, _ = load_checkpoint(gan)
    return {k: ((1 - s) * a[k].numpy().astype(np.float64) + s * b[k].numpy().astype(np.float64)).astype(np.float32)
            for k in a}


def test_interpolate_state_ends_and_middle(pair):
    gan, psnr = pair
    a, _ = load_checkpoint(psnr)
    b, _ = load_checkpoint(gan)
    for s, expected in [(0, {k: v.numpy() for k, v in a.items()}), (1, {k: v.numpy() for k, v in b.items()}),
                        (0.5, numpy_blend(psnr, gan, 0.5)), (0.3, numpy_blend(psnr, gan, 0.3))]:
        blended = interpolate_state(a, b, s)
        assert blended.keys() == a.keys()
        for name, value in blended.items():
            np.testing.assert_array_equal(value.numpy(), expected[name], err_msg=f"{name} at s={s}")
    assert not np.array_equal(a["conv_first.weight"].numpy(), b["conv_first.weight"].numpy())


def test_interpolate_state_refuses_other_shapes_and_strengths(pair, tmp_path):
    gan, _ = pair
    wider = random_weights(tmp_path / "wide.safetensors", 3, nf=8)
    a, _ = load_checkpoint(gan)
    b, _ = load_checkpoint(wider)
    with pytest.raises(RealSRError, match="different shapes: conv_first.weight"):
        interpolate_state(a, b, 0.5)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(RealSRError, match="--strength"):
            interpolate_state(a, a, bad)
    with pytest.raises(RealSRError, match="different networks"):
        Upscaler(str(gan), device="cpu", precision="fp32", strength=0.5, strength_base=str(wider))


def upscale(image: np.ndarray, model, **options) -> np.ndarray:
    return Upscaler(str(model), device="cpu", precision="fp32", backend="torch", **options).upscale_image(image)


def test_upscaler_at_0_half_and_1(pair, tmp_path, rng):
    gan, psnr = pair
    image = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    alone = upscale(image, gan)
    # strength 1: the model alone; the base is never opened (it does not exist)
    np.testing.assert_array_equal(upscale(image, gan, strength=1.0, strength_base=str(tmp_path / "none.pth")), alone)
    np.testing.assert_array_equal(upscale(image, gan, strength=0.0, strength_base=str(psnr)), upscale(image, psnr))
    half = tmp_path / "numpy_half.safetensors"
    save_safetensors(half, {k: torch.from_numpy(v) for k, v in numpy_blend(psnr, gan, 0.5).items()}, TINY)
    blended = upscale(image, gan, strength=0.5, strength_base=str(psnr))
    np.testing.assert_array_equal(blended, upscale(image, half))
    assert not np.array_equal(blended, alone)
    assert list((tmp_path / "cache" / "models").glob("blend-*.safetensors"))  # made once, cached


@pytest.mark.parametrize("backend", ["torch", "onnx", "tensorrt", "ncnn", "auto"])
def test_every_backend_loads_the_blend(pair, backend):
    """The runners all load `settings.model` through models.load_model: the blend is that model."""
    gan, psnr = pair
    settings = with_strength_applied(UpscalerSettings(str(gan), "auto", "auto", backend=backend, strength=0.25,
                                                      strength_base=str(psnr)))
    assert settings.strength == 1.0 and settings.backend == backend
    expected = numpy_blend(psnr, gan, 0.25)
    for name, value in load_model(settings.model).state_dict().items():
        np.testing.assert_array_equal(value.numpy(), expected[name])


def test_ncnn_runs_the_blend(pair, rng):
    """The ncnn backend gets the blend as an ncnn pair (fp32 weights): the torch blend's pixels."""
    pytest.importorskip("ncnn")
    gan, psnr = pair
    image = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    on_ncnn = Upscaler(str(gan), device="cpu", backend="ncnn", strength=0.5, strength_base=str(psnr)).upscale_image(image)
    on_torch = upscale(image, gan, strength=0.5, strength_base=str(psnr))
    assert np.abs(on_ncnn.astype(int) - on_torch).max() <= 1
    assert not np.array_equal(on_torch, upscale(image, gan))


def test_what_cannot_blend_says_so(pair, monkeypatch, tmp_path):
    gan, psnr = pair
    with pytest.raises(RealSRError, match="--onnx"):
        UpscalerSettings(str(gan), backend="onnx", options={"onnx": "graph.onnx"}, strength=0.5)
    with pytest.raises(RealSRError, match="--strength"):
        UpscalerSettings(str(gan), strength=2.0)
    # the default base, esrgan-psnr, is a download: offline and not cached, one clear error
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    with pytest.raises(RealSRError, match=download.OFFLINE_ENV):
        Upscaler(str(gan), device="cpu", precision="fp32", backend="torch", strength=0.5)


def test_cli_strength(pair, tmp_path, rng, monkeypatch, capsys):
    monkeypatch.setattr(cli, "VERBS", ("upscale",))
    gan, psnr = pair
    image = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    common = ["--model", gan, "--device", "cpu", "--backend", "torch", "--precision", "fp32"]
    assert cli.main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), *map(str, common),
                     "--strength", "0.5", "--strength-base", str(psnr)]) == 0
    expected = upscale(image, gan, strength=0.5, strength_base=str(psnr))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)  # restored after --offline sets it
    assert cli.main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out2.png"), *map(str, common),
                     "--strength", "0.5", "--offline"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("realsr upscale: error:") and download.OFFLINE_ENV in err[-1]
    assert not (tmp_path / "out2.png").exists()
