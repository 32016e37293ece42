"""TensorRT: profile and tile arithmetic, sidecar validation and the install hint run anywhere;
engine build and inference run where TensorRT and a CUDA GPU are present (skipped otherwise)."""
from __future__ import annotations

import copy
import functools
import importlib.util
import json
from pathlib import Path

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
from realsr_fast.tiling import DEFAULT_TILE_PAD
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


def test_default_profile_takes_small_tiles_and_is_tuned_for_the_default_tile():
    from realsr_fast.export.tensorrt_build import DEFAULT_PROFILE

    profile = Profile(*DEFAULT_PROFILE)
    assert profile.min <= 16
    assert profile.tile_for(DEFAULT_TILE_PAD) + 2 * DEFAULT_TILE_PAD == profile.opt


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


def test_cli_profile_defaults_are_the_default_profile():
    from realsr_fast.export.tensorrt_build import DEFAULT_PROFILE

    args = cli.build_parser().parse_args(["export", "tensorrt", "-o", "m.engine"])
    assert (args.min, args.opt, args.max) == DEFAULT_PROFILE


def test_cuda_index_names_the_gpu_to_make_current():
    from realsr_fast.device import cuda_index

    assert cuda_index(torch.device("cuda", 1)) == 1
    with pytest.raises(RealSRError, match="not a CUDA device"):
        cuda_index(torch.device("cpu"))


def test_engine_options_need_the_tensorrt_backend(tmp_path, capsys):
    from realsr_fast.inference.backends import UpscalerSettings

    with pytest.raises(RealSRError, match="--engine, --rebuild-engine, --cuda-graph are options of --backend tensorrt"):
        UpscalerSettings(options={"engine": tmp_path / "m.engine"})
    assert cli.main(["upscale", str(tmp_path), "-o", str(tmp_path / "out"), "--backend", "torch", "--cuda-graph"]) == 1
    assert "add --backend tensorrt" in capsys.readouterr().err


# ---- on a GPU with TensorRT ---------------------------------------------------------------

def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(1 / mse))


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    from realsr_fast.export.tensorrt_build import export_tensorrt

    model = full_range_tiny()
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
def test_engine_matches_torch_fp32_on_alternating_shapes(tiny_engine, cuda_graph):
    from realsr_fast.inference.tensorrt_runner import TensorRTRunner

    model, path = tiny_engine
    on_gpu = copy.deepcopy(model).cuda()
    runner = TensorRTRunner(path, torch.device("cuda"), cuda_graph=cuda_graph,
                            fallback=lambda t: on_gpu(t.cuda()))
    sizes = [(16, 30), (64, 40), (16, 16), (16, 30), (5, 40), (64, 40)]  # repeats replay graphs
    for size in sizes:
        x = photo(*size)
        with torch.no_grad():
            expected = model(x).clamp(0, 1)
            got = runner(x.cuda()).cpu()
        assert got.shape == expected.shape
        assert float(expected.max() - expected.min()) > 0.5  # a real output range
        assert psnr(got, expected) >= 45, size


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


# ---- CPU-visible checks of the deployment path ------------------------------------------------

def _gpu_check_module():
    """`benchmarks/gpu_check_tensorrt.py`, the GPU script, whose tiny network these checks share."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check_tensorrt.py"
    spec = importlib.util.spec_from_file_location("gpu_check_tensorrt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


full_range_tiny = functools.lru_cache(maxsize=1)(_gpu_check_module().full_range_tiny)


@pytest.fixture(scope="module")
def df2k():
    from realsr_fast.models.loading import load_model

    return load_model("df2k").eval()


@pytest.mark.slow
def test_repeated_edge_padding_changes_df2k_deep_inside_the_tile(df2k):
    """Why the runner never pads: edge-replicating a 40x48 tile to 64 px (the old profile
    minimum) changes df2k's output far from the padded border."""
    x = photo(40, 48)
    with torch.no_grad():
        exact = df2k(x).clamp(0, 1)
        padded = df2k(torch.nn.functional.pad(x, (0, 16, 0, 24), mode="replicate"))
    inner = (slice(None), slice(None), slice(16, 4 * 40 - 64), slice(16, 4 * 48 - 64))
    assert psnr(padded[..., :160, :192].clamp(0, 1)[inner], exact[inner]) < 45


@pytest.mark.slow
@pytest.mark.parametrize("size", [(40, 48), (5, 7)])
def test_runner_sends_tiles_as_they_are_with_df2k(df2k, size):
    """With an exact stand-in for the engine (df2k in fp32), every tile under the default
    profile comes out as the model's own output: no padding anywhere, small tiles to the
    fallback."""
    from realsr_fast.export.tensorrt_build import DEFAULT_PROFILE
    from realsr_fast.inference.tensorrt_runner import run_tiles

    calls = []

    def engine(t):
        calls.append(tuple(t.shape))
        return df2k(t)

    x = photo(*size)
    with torch.no_grad():
        expected = df2k(x).clamp(0, 1)
        got = run_tiles(x, engine, df2k, Profile(*DEFAULT_PROFILE))
    assert float(expected.max() - expected.min()) > 0.1  # a photo's range (a random model: 0.06)
    assert psnr(got, expected) >= 80
    assert calls == ([] if min(size) < DEFAULT_PROFILE[0] else [(1, 3, *size)])


@pytest.mark.parametrize("size", [(16, 16), (8, 30), (7, 20), (33, 9)])
def test_runner_tiles_match_the_model_at_several_shapes(size):
    from realsr_fast.inference.tensorrt_runner import run_tiles

    model = full_range_tiny()
    x = torch.cat([photo(*size), photo(*size).flip(-1)])
    with torch.no_grad():
        expected = model(x).clamp(0, 1)
        got = run_tiles(x, model, model, Profile(8, 16, 64))
    assert psnr(got, expected) >= 80


def test_runner_redoes_overflowing_items_and_refuses_without_fallback():
    from realsr_fast.inference.tensorrt_runner import run_tiles

    x = photo(12, 12).expand(2, -1, -1, -1)
    inf_first = iter([torch.full((1, 3, 48, 48), float("inf")), torch.full((1, 3, 48, 48), 0.25)])
    got = run_tiles(x, lambda t: next(inf_first), lambda t: torch.full((1, 3, 48, 48), 0.75),
                    Profile(8, 16, 64))
    assert got[0].eq(0.75).all() and got[1].eq(0.25).all()
    with pytest.raises(RealSRError, match="minimum side"):
        run_tiles(photo(5, 12), lambda t: t, None, Profile(8, 16, 64))
    with pytest.raises(RealSRError, match="--tile"):
        run_tiles(photo(5, 65), lambda t: t, None, Profile(8, 16, 64))


class FakeCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b"+timed"


class FakeConfig:
    """IBuilderConfig's timing-cache calls as TensorRT documents them: set_timing_cache returns
    False for a cache from another device or version (with ignore_mismatch False), and then
    get_timing_cache returns None."""

    def __init__(self, accepts_old: bool, gives_cache: bool = True) -> None:
        self.accepts_old, self.gives_cache, self.cache = accepts_old, gives_cache, None

    def set_memory_pool_limit(self, pool, size) -> None:
        pass

    def add_optimization_profile(self, profile) -> None:
        pass

    def create_timing_cache(self, data: bytes) -> FakeCache:
        return FakeCache(bytes(data))

    def set_timing_cache(self, cache: FakeCache, ignore_mismatch: bool) -> bool:
        if cache.data and not self.accepts_old:
            return False
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache if self.gives_cache else None


def fake_tensorrt(config: FakeConfig):
    from types import SimpleNamespace

    class Builder:
        def __init__(self, logger) -> None:
            pass

        def create_network(self, flags):
            return "network"

        def create_builder_config(self):
            return config

        def create_optimization_profile(self):
            return SimpleNamespace(set_shape=lambda *args: None)

        def build_serialized_network(self, network, config):
            return b"engine bytes"

    class Parser:
        num_errors = 0

        def __init__(self, network, logger) -> None:
            pass

        def parse_from_file(self, path) -> bool:
            return True

    class Logger:
        WARNING = 2

        def __init__(self, level) -> None:
            pass

    return SimpleNamespace(Logger=Logger, Builder=Builder, OnnxParser=Parser,
                           NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=0),
                           MemoryPoolType=SimpleNamespace(WORKSPACE=0))


@pytest.mark.parametrize("accepts_old", [False, True])
def test_a_refused_timing_cache_never_loses_the_engine(tmp_path, monkeypatch, caplog, accepts_old):
    from realsr_fast.export import tensorrt_build

    config = FakeConfig(accepts_old)
    trt = fake_tensorrt(config)
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: trt)
    cache = tmp_path / "m.timing"
    cache.write_bytes(b"from another GPU")
    engine = tensorrt_build.build_engine(tmp_path / "m.onnx", Profile(8, 16, 64), cache)
    assert engine == b"engine bytes"
    if accepts_old:
        assert cache.read_bytes() == b"from another GPU+timed"
    else:
        assert "refused the timing cache" in caplog.text
        assert cache.read_bytes() == b"+timed"  # replaced by this GPU's fresh cache


def test_no_timing_cache_after_the_build_still_returns_the_engine(tmp_path, monkeypatch, caplog):
    from realsr_fast.export import tensorrt_build

    trt = fake_tensorrt(FakeConfig(True, gives_cache=False))
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: trt)
    cache = tmp_path / "m.timing"
    assert tensorrt_build.build_engine("m.onnx", Profile(8, 16, 64), cache) == b"engine bytes"
    assert not cache.exists() and "no timing cache" in caplog.text
