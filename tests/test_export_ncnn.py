"""`realsr export --format ncnn|pth|safetensors`: the official graph text, and the `ncnn` package
running an exported model against torch fp32 (PSNR >= 50 dB) on a random image.

The older `realsr export onnx|tensorrt [--model M]` form is checked to resolve as before.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from realsr_fast import cli
from realsr_fast.commands.export import resolve
from realsr_fast.export.ncnn_export import export_ncnn, ncnn_paths, rrdbnet_param
from realsr_fast.models import zoo
from realsr_fast.models.formats import load_checkpoint, save_safetensors
from realsr_fast.models.ncnn_format import load_ncnn
from realsr_fast.models.rrdbnet import RRDBNet


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two tensors in [0, 1]."""
    mse = float(torch.mean((a.double() - b.double()) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


@pytest.fixture(scope="module")
def tiny() -> RRDBNet:
    torch.manual_seed(5)
    return RRDBNet(nf=8, nb=2, gc=4).eval().requires_grad_(False)


def ncnn_forward(param: Path, weights: Path, x: torch.Tensor) -> torch.Tensor:
    """The `ncnn` package's fp32 CPU output for x (1, 3, h, w): the backend's runner, unclamped inputs."""
    pytest.importorskip("ncnn")
    from realsr_fast.inference.ncnn_runner import NcnnRunner

    return NcnnRunner(param, weights, threads=2)(x)


def test_param_is_the_official_text() -> None:
    """For df2k's sizes the generated .param is the official one byte for byte (CRLF aside)."""
    param, _ = zoo.package_files(zoo.MODELS["df2k"])
    assert rrdbnet_param() == param.read_bytes().replace(b"\r\n", b"\n").decode()


def test_other_sizes_parse_back(tmp_path: Path, tiny: RRDBNet) -> None:
    param, weights = export_ncnn(tiny, tmp_path / "tiny.param")
    state, config = load_ncnn(param, weights)
    assert config == tiny.config()
    for key, value in tiny.state_dict().items():
        assert torch.equal(state[key], value), key  # fp32 storage: exact
    assert ncnn_paths(tmp_path / "models-x", 4) == (tmp_path / "models-x" / "x4.param", tmp_path / "models-x" / "x4.bin")


def test_ncnn_package_runs_the_export_like_torch(tmp_path: Path, tiny: RRDBNet, rng) -> None:
    """An adapted-model stand-in (a random tiny RRDBNet saved as safetensors) through the CLI."""
    weights_file = tmp_path / "model.safetensors"
    save_safetensors(weights_file, tiny.state_dict(), tiny.config())
    assert cli.main(["export", str(weights_file), "--format", "ncnn", "-o", str(tmp_path / "models-mine")]) == 0
    x = torch.from_numpy(rng.random((1, 3, 20, 23), dtype=np.float32))
    ours = ncnn_forward(tmp_path / "models-mine" / "x4.param", tmp_path / "models-mine" / "x4.bin", x)
    with torch.inference_mode():
        reference = tiny(x).clamp(0, 1)
    assert psnr(ours, reference) >= 50


@pytest.mark.slow
def test_exported_df2k_in_ncnn_matches_torch_fp32(tmp_path: Path, rng, monkeypatch) -> None:
    """The full-size model: 23 blocks exported, run by the `ncnn` package on a 16 x 16 random image."""
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path / "cache"))
    from realsr_fast.models.loading import load_model

    model = load_model("df2k")
    torch.manual_seed(0)
    with torch.no_grad():  # other weights than the official, as an adapted model would have
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 1e-3)
    param, weights = export_ncnn(model, tmp_path / "adapted.param")
    x = torch.from_numpy(rng.random((1, 3, 16, 16), dtype=np.float32))
    ours = ncnn_forward(param, weights, x)
    with torch.inference_mode():
        reference = model(x).clamp(0, 1)
    db = psnr(ours, reference)
    print(f"exported df2k-sized model: ncnn package vs torch fp32 {db:.1f} dB")
    assert db >= 50


def test_pth_and_safetensors_round_trip(tmp_path: Path, tiny: RRDBNet) -> None:
    source = tmp_path / "tiny.safetensors"
    save_safetensors(source, tiny.state_dict(), tiny.config())
    for name in ("tiny.pth", "again.safetensors"):
        assert cli.main(["export", str(source), "-o", str(tmp_path / name)]) == 0
        state, config = load_checkpoint(tmp_path / name)
        assert config == tiny.config() and all(torch.equal(state[k], v) for k, v in tiny.state_dict().items())


@pytest.mark.parametrize("argv,expected", [
    (["export", "onnx", "-o", "m.onnx"], ("df2k", "onnx")),
    (["export", "onnx", "--model", "x.pth", "-o", "m.onnx"], ("x.pth", "onnx")),
    (["export", "tensorrt", "-o", "m.engine"], ("df2k", "tensorrt")),
    (["export", "x.pth", "-o", "models-x/", "--format", "ncnn"], ("x.pth", "ncnn")),
    (["export", "df2k", "-o", "a.param"], ("df2k", "ncnn")),
    (["export", "-o", "a.safetensors"], ("df2k", "safetensors")),
    (["export", "df2k", "-o", "models-mine/"], ("df2k", "ncnn")),  # a folder: x4.param / x4.bin in it
])
def test_old_and_new_forms_resolve(argv, expected) -> None:
    assert resolve(cli.build_parser(["export"]).parse_args(argv)) == expected


@pytest.mark.parametrize("argv,message", [
    (["export", "df2k", "-o", "out.xyz"], "cannot tell the format from out.xyz"),
    (["export", "no-such-model", "-o", "a.param"], "unknown model 'no-such-model'"),
    (["export", "onnx", "--format", "ncnn", "-o", "a.param"], "contradict"),
])
def test_bad_export_lines_exit_2_with_one_line(argv, message, capsys) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
