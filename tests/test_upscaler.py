"""The tiler and the Upscaler: tiling is exact for a local function, seams stay small for
RRDBNet, precisions and devices resolve as documented, overflowing tiles are redone in fp32."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from realsr_fast.errors import RealSRError
from realsr_fast.inference.torch_runner import cpu_has_native_bf16
from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.models.formats import save_safetensors
from realsr_fast.models.rrdbnet import RRDBNet
from realsr_fast.tiling import tile_size
from realsr_fast.tiling.tiler import plan_tiles, upscale_tiled

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"in_nc": 3, "out_nc": 3, "nf": 8, "nb": 1, "gc": 4, "scale": 4}


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory) -> tuple[Path, RRDBNet]:
    torch.manual_seed(0)
    model = RRDBNet(**SMALL).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    with torch.no_grad():  # an output around mid-grey, so that clamping does not hide errors
        model.conv_last.bias.fill_(0.5)
    path = tmp_path_factory.mktemp("w") / "small.safetensors"
    save_safetensors(path, model.state_dict(), SMALL)
    return path, model


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --- tiler -----------------------------------------------------------------------------------

@pytest.mark.parametrize("height,width,tile,pad", [(37, 50, 16, 3), (5, 7, 100, 10),
                                                   (64, 64, 32, 0), (33, 9, 8, 20)])
def test_tile_cores_partition_the_image(height, width, tile, pad) -> None:
    covered = np.zeros((height, width), int)
    for t in plan_tiles(height, width, tile, pad):
        assert t.y1 - t.y0 <= tile and t.x1 - t.x0 <= tile
        assert (t.py0, t.px0) == (max(t.y0 - pad, 0), max(t.x0 - pad, 0))
        assert (t.py1, t.px1) == (min(t.y1 + pad, height), min(t.x1 + pad, width))
        covered[t.y0:t.y1, t.x0:t.x1] += 1
    assert (covered == 1).all()


def local_fn(x: torch.Tensor) -> torch.Tensor:
    """Two zero-padded 3x3 convolutions (receptive radius 2), then nearest x3."""
    weight = torch.linspace(-1, 1, 27).reshape(1, 3, 3, 3).repeat(3, 1, 1, 1)
    y = F.conv2d(F.conv2d(x, weight, padding=1), weight, padding=1)
    return y.repeat_interleave(3, -1).repeat_interleave(3, -2)


def test_tiling_is_exact_when_the_context_covers_the_receptive_field() -> None:
    x = rand(2, 3, 23, 31)
    whole = local_fn(x)
    calls = []
    tiled = upscale_tiled(x, local_fn, 3, tile=8, pad=2, progress=lambda d, n: calls.append((d, n)))
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)
    assert calls == [(i, 12) for i in range(1, 13)]  # ceil(23/8) * ceil(31/8) tiles
    too_little = upscale_tiled(x, local_fn, 3, tile=8, pad=1)
    assert (too_little - whole).abs().max() > 1e-2  # the test can tell a seam


def test_tiler_checks_the_tile_function_output() -> None:
    with pytest.raises(RuntimeError, match="expected"):
        upscale_tiled(rand(1, 3, 8, 8), lambda t: t, 2, tile=4, pad=1)


# --- Upscaler ----------------------------------------------------------------------------------

def test_whole_image_equals_the_model(small_weights) -> None:
    path, model = small_weights
    up = Upscaler(path, device="cpu")
    assert (up.scale, up.device, up.precision) == (4, torch.device("cpu"), "fp32")
    x = rand(2, 3, 13, 17)
    with torch.no_grad():
        expected = model(x).clamp(0, 1)
    got = up.upscale_tensor(x)
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert 0.05 < float(expected.std())  # not a constant image


def test_tiled_output_is_close_to_whole(small_weights) -> None:
    path, _ = small_weights
    x = rand(1, 3, 40, 44, seed=1)
    whole = Upscaler(path, device="cpu").upscale_tensor(x)
    tiled = Upscaler(path, device="cpu", tile=16, tile_pad=10).upscale_tensor(x)
    # This model's receptive radius (about 20 LR px) exceeds the padding, so tiles differ a little.
    assert float((tiled - whole).abs().max()) < 1e-2


def test_numpy_and_tensor_calls(small_weights) -> None:
    path, model = small_weights
    up = Upscaler(path, device="cpu")
    image = (rand(9, 11, 3, seed=2) * 255).round().to(torch.uint8).numpy()
    out = up(image)
    assert out.shape == (36, 44, 3) and out.dtype == np.uint8
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = (model(x).clamp(0, 1) * 255).round()[0].permute(1, 2, 0).numpy()
    assert np.abs(out.astype(float) - expected).max() <= 1
    out16 = up((image.astype(np.uint16) * 257))
    assert out16.dtype == np.uint16 and out16.shape == (36, 44, 3)
    assert up(x[0]).shape == (3, 36, 44) and up(x).shape == (1, 3, 36, 44)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.float32), torch.zeros(1, 1, 4, 4),
                                 torch.zeros(1, 3, 0, 4)])
def test_bad_inputs(bad, small_weights) -> None:
    with pytest.raises(RealSRError):
        Upscaler(small_weights[0], device="cpu")(bad)


@pytest.mark.parametrize("kwargs,message", [
    ({"device": "tpu"}, "unknown device|not supported"),
    ({"device": "cpu", "precision": "fp8"}, "unknown precision"),
    ({"device": "cpu", "precision": "fp16"}, "fp16 runs on CUDA only"),
    ({"device": "cpu", "tile": 0}, "tile must be"),
    ({"device": "cpu", "tile_pad": -1}, "padding"),
])
def test_bad_settings(kwargs, message, small_weights) -> None:
    with pytest.raises(RealSRError, match=message):
        Upscaler(small_weights[0], **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_is_a_clear_error(small_weights) -> None:
    with pytest.raises(RealSRError, match="CUDA is not available"):
        Upscaler(small_weights[0], device="cuda")
    assert Upscaler(small_weights[0]).device == torch.device("cpu")


def test_overflowing_tiles_are_redone_in_fp32(small_weights, caplog) -> None:
    path, model = small_weights
    up = Upscaler(path, device="cpu", precision="bf16", tile=8, tile_pad=2)
    runner = up._runner
    real = runner._model
    runner._model = lambda x: real(x) * float("inf")  # every reduced-precision tile overflows
    x = rand(1, 3, 16, 16, seed=3)
    with caplog.at_level(logging.WARNING):
        got = up.upscale_tensor(x)
    assert sum("overflowed" in r.message for r in caplog.records) == 1  # said once, 4 tiles
    expected = Upscaler(path, device="cpu", tile=8, tile_pad=2).upscale_tensor(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_bf16_is_close_to_fp32(small_weights) -> None:
    path, _ = small_weights
    x = rand(1, 3, 16, 16, seed=4)
    fp32 = Upscaler(path, device="cpu").upscale_tensor(x)
    bf16 = Upscaler(path, device="cpu", precision="bf16").upscale_tensor(x)
    assert bf16.dtype == torch.float32
    assert 0 < float((bf16 - fp32).abs().max()) < 0.05


def test_bf16_without_native_support_is_announced(small_weights, monkeypatch, caplog) -> None:
    from realsr_fast.inference import torch_runner as module

    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING):
        Upscaler(small_weights[0], device="cpu", precision="bf16")
    assert any("no native bf16" in r.message for r in caplog.records)


@pytest.mark.parametrize("native, bf16_bytes", [(True, 2), (False, 12)])
def test_emulated_bf16_tiles_are_planned_for_its_fp32_temporaries(small_weights, monkeypatch, native, bf16_bytes) -> None:
    from realsr_fast.inference import torch_runner as module

    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: native)
    assert Upscaler(small_weights[0], device="cpu", precision="bf16")._runner.itemsize == bf16_bytes
    assert Upscaler(small_weights[0], device="cpu", precision="fp32")._runner.itemsize == 4
    assert module.planning_itemsize("fp16", torch.device("cuda")) == 2


def test_auto_tile_fits_the_memory_budget(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(tile_size, "available_memory", lambda device: 8 << 30)
    per_px = tile_size.bytes_per_pixel(64, 4, 4)
    assert tile_size.auto_tile(1, 64, 64, 10, cpu, per_px) is None
    tile = tile_size.auto_tile(1, 3000, 4000, 10, cpu, per_px)
    budget = (8 << 30) * tile_size.MEMORY_FRACTION["cpu"]
    assert (tile + 20) ** 2 * per_px <= budget < (tile + 21) ** 2 * per_px
    assert tile_size.auto_tile(2, 3000, 4000, 10, cpu, per_px) < tile  # a batch needs more
    assert tile_size.auto_tile(1, 3000, 4000, 10, cpu, tile_size.bytes_per_pixel(64, 4, 2)) > tile  # bf16 needs less


def test_auto_tile_keeps_a_photo_whole_when_memory_allows(monkeypatch) -> None:
    """Tiles cost context recomputation, so no fixed cap splits an image the memory can hold."""
    monkeypatch.setattr(tile_size, "available_memory", lambda device: 24 << 30)
    assert tile_size.auto_tile(1, 512, 512, 24, torch.device("cpu"), tile_size.bytes_per_pixel(64, 4, 4)) is None


def test_auto_tile_is_used_for_large_inputs(small_weights, monkeypatch) -> None:
    per_px = tile_size.bytes_per_pixel(SMALL["nf"], 4, 4)
    monkeypatch.setattr(tile_size, "available_memory", lambda device: 4 * 100 * 100 * per_px)
    up = Upscaler(small_weights[0], device="cpu")
    assert up.tile_size(1, 16, 16) is None
    assert up.tile_size(1, 200, 300) == 100 - 2 * up.tile_pad


@pytest.fixture(scope="module")
def df2k_width_weights(tmp_path_factory) -> Path:
    """RRDBNet as wide as df2k (nf 64, gc 32) with one block: the HR layers that set a tile's
    peak memory are df2k's; the LR trunk's length barely matters."""
    config = {"in_nc": 3, "out_nc": 3, "nf": 64, "nb": 1, "gc": 32, "scale": 4}
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("w64") / "nf64.safetensors"
    save_safetensors(path, RRDBNet(**config).state_dict(), config)
    return path


@pytest.mark.slow
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                    reason="measures the peak RSS through Linux's /proc/self/clear_refs")
@pytest.mark.parametrize("precision, budget_mib", [
    ("fp32", 64),
    pytest.param("bf16", 32, marks=pytest.mark.skipif(
        not cpu_has_native_bf16(), reason="emulated bf16: its peak depends on oneDNN's per-thread scratch "
        "(9-15 units measured), so the planner's 12 bytes are a margin, not a model to check")),
])
def test_auto_tile_memory_measured_by_the_os(df2k_width_weights, monkeypatch, precision,
                                             budget_mib) -> None:
    """The automatic tile, run for real, keeps within its memory budget and is not needlessly small.

    Independent of `tile_size`'s memory model: the peak is the resident memory the kernel counts
    while the Upscaler runs the largest tile it would cut (core + pad on both sides) in a fresh
    process (tests/tile_memory_probe.py). The planner assumes more than the measured peaks, so the
    tile uses part of its budget; the bounds (40-90 %) fail if the planner were off by 2x either way.
    bf16 without native support is planned with a margin instead of a model, and is not checked
    here. bf16 runs a Winograd trunk whose buffers the planner adds per pixel
    (`workspace_bytes_per_pixel`), so its budget is larger, to stay above MIN_TILE. The measured
    peaks and budget shares: benchmarks/README.md, "Tile memory".
    """
    budget = budget_mib << 20
    monkeypatch.setattr(tile_size, "available_memory",
                        lambda device: budget / tile_size.MEMORY_FRACTION["cpu"])
    up = Upscaler(df2k_width_weights, device="cpu", precision=precision, tile_pad=4)
    tile = up.tile_size(1, 1000, 1000)
    assert tile is not None and tile > tile_size.MIN_TILE  # set by the budget, not the floor
    side = tile + 2 * up.tile_pad
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    probe = subprocess.run([sys.executable, str(ROOT / "tests" / "tile_memory_probe.py"),
                            str(df2k_width_weights), precision, str(side)],
                           env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    peak = int(probe.stdout.split()[-1])
    assert peak <= 0.9 * budget, f"a {side} px tile peaked at {peak / budget:.0%} of its budget"
    assert peak >= 0.4 * budget, f"a {side} px tile used only {peak / budget:.0%} of its budget"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_tile_memory_measured_by_cuda(df2k_width_weights, monkeypatch) -> None:
    """The CUDA twin of the test above, in fp16 (CUDA's default): the peak is the caching
    allocator's count of bytes in use (cuDNN's workspaces included), not the planner's model."""
    budget = 256 << 20
    monkeypatch.setattr(tile_size, "available_memory",
                        lambda device: budget / tile_size.MEMORY_FRACTION["cuda"])
    up = Upscaler(df2k_width_weights, device="cuda", tile_pad=4)
    assert up.precision == "fp16"
    tile = up.tile_size(1, 4000, 4000)
    assert tile is not None and tile > tile_size.MIN_TILE
    side = tile + 2 * up.tile_pad
    x = torch.rand(1, 3, side, side, device="cuda")
    up.upscale_tensor(x[..., :32, :32])  # cuDNN's one-time setup is not a tile's memory
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    up.upscale_tensor(x)
    peak = torch.cuda.max_memory_allocated() - before
    assert peak <= 0.9 * budget, f"a {side} px tile peaked at {peak / budget:.0%} of its budget"
    assert peak >= 0.4 * budget, f"a {side} px tile used only {peak / budget:.0%} of its budget"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_matches_cpu_fp32(small_weights) -> None:
    path, _ = small_weights
    x = rand(1, 3, 24, 24, seed=5)
    gpu = Upscaler(path, device="cuda")
    assert gpu.precision == "fp16"
    cpu = Upscaler(path, device="cpu").upscale_tensor(x)
    got = gpu.upscale_tensor(x.cuda())
    assert got.device.type == "cpu"
    assert float((got - cpu).abs().max()) < 1e-2


def test_out_of_memory_retries_with_smaller_tiles(small_weights, caplog) -> None:
    path, _ = small_weights
    up = Upscaler(path, device="cpu")
    real = up._runner._model

    def small_tiles_only(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] * x.shape[-2] > 60 * 60:
            raise torch.OutOfMemoryError("pretend")
        return real(x)

    up._runner._model = small_tiles_only
    x = rand(1, 3, 64, 64, seed=6)
    with caplog.at_level(logging.WARNING):
        got = up.upscale_tensor(x)
    assert any("retrying with 32 px" in r.message for r in caplog.records)
    expected = Upscaler(path, device="cpu", tile=32).upscale_tensor(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    up._runner._model = lambda x: (_ for _ in ()).throw(torch.OutOfMemoryError("pretend"))
    with pytest.raises(RealSRError, match="out of memory"):
        up.upscale_tensor(x)
