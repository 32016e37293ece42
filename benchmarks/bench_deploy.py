"""Per-tile latency of the deployment backends with the default model (RealSR DF2K), each timed
in the same run on the same real photo crop.

    python -m pytest benchmarks/bench_deploy.py --benchmark-json benchmarks/results/deploy_cpu.json
    python benchmarks/ratios.py benchmarks/results/deploy_cpu.json

Groups (the `_ours` row is the reference of each):
- cpu_tile: ONNX Runtime (fp32 graph from `export_onnx`, CPU provider, 2 threads) vs torch fp32
  and torch bf16 (`Upscaler`, one tile, no tiling) vs the ncnn package (same weights), on one
  48 x 48 tile (2 threads each);
- cuda_tile (with a GPU and TensorRT): TensorRT fp16 engine (with and without CUDA graphs) vs
  torch fp16, both through the same `Upscaler.upscale_tensor` call (tiler, GPU tile, copy back to
  the CPU) on a 256 x 256 crop; the PSNR of each against torch in IEEE fp32 (TF32 off) is stored
  in extra_info (goal: TensorRT >= 45 dB, >= 2x). The engine comes from the cache folder (built by
  the first run on a GPU, reused after), so a run times inference, not the build.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from realsr_fast.device import ieee_fp32
from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.models import zoo

ncnn = pytest.importorskip("ncnn")
ort = pytest.importorskip("onnxruntime")
skimage_data = pytest.importorskip("skimage.data")

TILE = 48
GPU_TILE = 256
GPU_PAD = 24
ROUNDS = dict(rounds=3, iterations=1, warmup_rounds=1)
CUDA = [pytest.mark.cuda,
        pytest.mark.skipif(not (torch.cuda.is_available()
                                and importlib.util.find_spec("tensorrt") is not None),
                           reason="needs a GPU and TensorRT")]


def crop(size: int) -> torch.Tensor:
    """(1, 3, size, size) float32 crop of a real photo (face, hair, hat)."""
    image = skimage_data.astronaut()[40:40 + size, 150:150 + size]
    return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double().cpu() - b.double().cpu()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(1 / mse))


@pytest.fixture(scope="module")
def tile() -> torch.Tensor:
    return crop(TILE)


@pytest.fixture(scope="module")
def onnx_graph(tmp_path_factory):
    from realsr_fast.export.onnx_export import export_onnx
    from realsr_fast.models.loading import load_model

    path = tmp_path_factory.mktemp("deploy") / "df2k_fp32.onnx"
    export_onnx(load_model("df2k"), path)
    return path


@pytest.mark.benchmark(group="cpu_tile")
def test_onnxruntime_fp32_ours(benchmark, onnx_graph, tile):
    from realsr_fast.inference.onnx_runner import OnnxRunner

    runner = OnnxRunner(onnx_graph, threads=2)
    y = benchmark.pedantic(runner, args=(tile,), **ROUNDS)
    reference = Upscaler("df2k", device="cpu", precision="fp32").upscale_tensor(tile)
    benchmark.extra_info["psnr_vs_torch_fp32"] = psnr(y, reference)
    assert psnr(y, reference) >= 50


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.benchmark(group="cpu_tile")
def test_torch(benchmark, tile, precision):
    upscaler = Upscaler("df2k", device="cpu", precision=precision)
    benchmark.pedantic(upscaler.upscale_tensor, args=(tile,), **ROUNDS)


@pytest.mark.benchmark(group="cpu_tile")
def test_ncnn(benchmark, tile):
    param, weights = zoo.package_files(zoo.MODELS["df2k"])
    net = ncnn.Net()
    net.opt.num_threads = 2
    net.load_param(str(param))
    net.load_model(str(weights))
    chw = tile[0].numpy().copy()  # ncnn.Mat wraps it: keep the array alive

    def run() -> np.ndarray:
        extractor = net.create_extractor()
        extractor.input("data", ncnn.Mat(chw))
        return np.array(extractor.extract("output")[1])

    assert benchmark.pedantic(run, **ROUNDS).shape == (3, 4 * TILE, 4 * TILE)


@pytest.fixture(scope="module")
def gpu_reference():
    x = crop(GPU_TILE).cuda()
    with ieee_fp32():
        reference = Upscaler("df2k", device="cuda", precision="fp32", tile=GPU_TILE,
                             tile_pad=GPU_PAD).upscale_tensor(x)
    return x, reference


def _timed_cuda(fn):
    def run():
        y = fn()
        torch.cuda.synchronize()
        return y
    return run


@pytest.mark.parametrize("cuda_graph", [False, True])
@pytest.mark.parametrize("device", [pytest.param("cuda", marks=CUDA)])
@pytest.mark.benchmark(group="cuda_tile")
def test_tensorrt_fp16_ours(benchmark, gpu_reference, device, cuda_graph):
    x, reference = gpu_reference
    upscaler = Upscaler("df2k", device=device, tile=GPU_TILE, tile_pad=GPU_PAD,
                        backend="tensorrt", cuda_graph=cuda_graph)
    y = benchmark.pedantic(_timed_cuda(lambda: upscaler.upscale_tensor(x)), **ROUNDS)
    benchmark.extra_info["psnr_vs_torch_fp32"] = psnr(y, reference)
    assert psnr(y, reference) >= 45


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=CUDA)])
@pytest.mark.benchmark(group="cuda_tile")
def test_torch_fp16(benchmark, gpu_reference, device):
    x, reference = gpu_reference
    upscaler = Upscaler("df2k", device=device, precision="fp16", tile=GPU_TILE, tile_pad=GPU_PAD)
    y = benchmark.pedantic(_timed_cuda(lambda: upscaler.upscale_tensor(x)), **ROUNDS)
    benchmark.extra_info["psnr_vs_torch_fp32"] = psnr(y, reference)
