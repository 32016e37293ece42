"""TensorRT: profile and tile arithmetic, sidecar validation and the install hint run anywhere;
engine build and inference run where TensorRT and a CUDA GPU are present (skipped otherwise)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from realsr_fast import cli
from realsr_fast.errors import RealSRError
from realsr_fast.export.tensorrt_build import (
    Profile,
    Sidecar,
    Target,
    check_sidecar,
    import_tensorrt,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from realsr_fast.inference.tensorrt_runner import pad_to_side
from realsr_fast.tiling.tiler import plan_tiles

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt_gpu = pytest.mark.skipif(not (HAS_TRT and torch.cuda.is_available()),
                                   reason="needs TensorRT and a CUDA GPU")

TARGET = Target("10.9.0.34", "NVIDIA H100 80GB HBM3", "9.0")


def sidecar(**changes) -> Sidecar:
    fields = dict(target=TARGET, profile=Profile(64, 256, 512), model_sha256="ab" * 32, scale=4,
                  tile_pad=10, fp32_units=("upconv1",))
    return Sidecar(**{**fields, **changes})


def test_profile_order_is_checked():
    with pytest.raises(RealSRError, match="min <= opt <= max"):
        Profile(128, 64, 512)
    with pytest.raises(RealSRError):
        Profile(0, 64, 512)
    assert Profile(64, 256, 512).shapes() == ((1, 3, 64, 64), (1, 3, 256, 256), (1, 3, 512, 512))


@pytest.mark.parametrize("height,width,pad", [(1000, 700, 10), (333, 2000, 0), (50, 513, 16)])
def test_default_tiles_with_padding_fit_the_profile(height, width, pad):
    profile = Profile(64, 256, 512)
    tile = profile.tile_for(pad)
    assert tile == 512 - 2 * pad
    for t in plan_tiles(height, width, tile, pad):
        assert t.py1 - t.py0 <= profile.max and t.px1 - t.px0 <= profile.max


def test_tile_requests_beyond_the_profile_are_refused():
    profile = Profile(64, 256, 512)
    assert profile.tile_for(10, 200) == 200
    with pytest.raises(RealSRError, match="--tile 492 or less"):
        profile.tile_for(10, 493)
    with pytest.raises(RealSRError, match="tile-pad"):
        Profile(8, 8, 16).tile_for(8)


def test_pad_to_side_repeats_edges_like_numpy(rng):
    x = torch.from_numpy(rng.random((2, 3, 5, 9), dtype=np.float32))
    got = pad_to_side(x, 7)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 2), (0, 0)), mode="edge")
    np.testing.assert_array_equal(got.numpy(), expected)
    assert pad_to_side(x, 4) is x


def test_sidecar_round_trip(tmp_path):
    engine = tmp_path / "m.engine"
    write_sidecar(engine, sidecar())
    assert sidecar_path(engine).name == "m.engine.json"
    assert read_sidecar(engine) == sidecar()
    data = json.loads(sidecar_path(engine).read_text())
    assert data["compute_capability"] == "9.0" and data["profile"] == {"min": 64, "opt": 256,
                                                                         "max": 512}


def test_broken_or_missing_sidecar_is_refused(tmp_path):
    engine = tmp_path / "m.engine"
    with pytest.raises(RealSRError, match="missing"):
        read_sidecar(engine)
    sidecar_path(engine).write_text('{"tensorrt_version": "10.9"}')
    with pytest.raises(RealSRError, match="not a valid engine sidecar"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("not json")
    with pytest.raises(RealSRError, match="cannot read"):
        read_sidecar(engine)


@pytest.mark.parametrize("other,words", [
    (Target("10.8.0.43", TARGET.gpu_name, "9.0"), "TensorRT 10.9.0.34"),
    (Target(TARGET.tensorrt_version, "NVIDIA L4", "8.9"), "GPU NVIDIA H100"),
])
def test_engine_for_another_target_is_refused_with_how_to_rebuild(other, words):
    with pytest.raises(RealSRError, match=words) as error:
        check_sidecar(sidecar(), other, "m.engine")
    assert "--rebuild-engine" in str(error.value)
    check_sidecar(sidecar(), TARGET, "m.engine")  # the same target passes


def test_engine_for_other_weights_is_refused():
    with pytest.raises(RealSRError, match="weights"):
        check_sidecar(sidecar(), TARGET, "m.engine", model_sha256="cd" * 32)
    check_sidecar(sidecar(), TARGET, "m.engine", model_sha256="ab" * 32)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed")
def test_without_tensorrt_the_commands_say_how_to_get_it(tmp_path, capsys):
    with pytest.raises(RealSRError, match=r"pip install 'realsr_fast\[tensorrt\]'"):
        import_tensorrt()
    assert cli.main(["export", "tensorrt", "-o", str(tmp_path / "m.engine")]) == 1
    assert "realsr_fast[tensorrt]" in capsys.readouterr().err
    assert not (tmp_path / "m.engine").exists()


def test_engine_options_need_the_tensorrt_backend(tmp_path):
    from realsr_fast.inference.upscale_files import upscale_files

    with pytest.raises(RealSRError, match="--backend tensorrt"):
        upscale_files([tmp_path], tmp_path / "out", engine=tmp_path / "m.engine")


# ---- on a GPU with TensorRT ---------------------------------------------------------------

def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(1 / mse))


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    from realsr_fast.export.tensorrt_build import export_tensorrt
    from realsr_fast.models.rrdbnet import RRDBNet

    torch.manual_seed(3)
    model = RRDBNet(nf=16, nb=2, gc=8).eval()
    path = tmp_path_factory.mktemp("trt") / "tiny.engine"
    cache = path.with_suffix(".timing")
    sidecar = export_tensorrt(model, path, Profile(16, 32, 64), cache, tile_pad=4)
    assert cache.is_file() and sidecar.target == Target.current()
    return model, path


def photo(height: int, width: int) -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.astronaut()[:height, 100:100 + width].copy()).permute(
        2, 0, 1)[None].float() / 255


@pytest.mark.cuda
@needs_trt_gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
@pytest.mark.parametrize("size", [(12, 30), (64, 40)])
def test_engine_matches_torch_fp32(tiny_engine, size, cuda_graph):
    from realsr_fast.inference.tensorrt_runner import TensorRTRunner

    model, path = tiny_engine
    runner = TensorRTRunner(path, torch.device("cuda"), cuda_graph=cuda_graph)
    x = photo(*size)
    with torch.no_grad():
        expected = model(x).clamp(0, 1)
    for _ in range(2):  # the second call replays the captured graph
        got = runner(x.cuda()).cpu()
        assert got.shape == expected.shape
        assert psnr(got, expected) >= 45


@pytest.mark.cuda
@needs_trt_gpu
def test_mismatched_engine_is_refused_on_the_gpu(tiny_engine, tmp_path):
    from realsr_fast.inference.tensorrt_runner import TensorRTRunner

    _, path = tiny_engine
    copy = tmp_path / "copy.engine"
    copy.write_bytes(path.read_bytes())
    data = read_sidecar(path).to_json()
    data["tensorrt_version"] = "0.0.1"
    sidecar_path(copy).write_text(json.dumps(data))
    with pytest.raises(RealSRError, match="rebuild"):
        TensorRTRunner(copy, torch.device("cuda"))
