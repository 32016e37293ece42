"""Upscaling one image x4 with the default model (RealSR DF2K): ours (torch) vs ncnn, timed in
the same run on the same 128 x 128 photo crop, 2 threads each.

    python -m pytest benchmarks/bench_upscale.py --benchmark-json benchmarks/results/upscale_cpu.json
    python benchmarks/ratios.py benchmarks/results/upscale_cpu.json

Groups (the `_ours` row is the reference of each):
- fp32: `Upscaler(precision="fp32")` (eager, channels_last, inference mode) vs the ncnn
  package running the same REALSR_DF2K_UP4X .param/.bin with its default CPU options;
- bf16: `Upscaler(precision="bf16")` vs the same ncnn run;
- tiling: one 128 x 128 image in 4 tiles of 64 (+ the default 24 px of context) vs in one piece (fp32);
- cuda (with a GPU): fp16 vs fp32 on the GPU.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.models import zoo
from realsr_fast.tiling import DEFAULT_TILE_PAD

ncnn = pytest.importorskip("ncnn")
skimage_data = pytest.importorskip("skimage.data")

SIZE = 128
ROUNDS = dict(rounds=3, iterations=1, warmup_rounds=1)
CUDA = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")]
# Without native bf16 (AVX512-BF16 / AMX) oneDNN emulates it: minutes per image on an AVX2-only CPU,
# a number that says nothing about the bf16 path this case measures.
NATIVE_BF16 = pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="CPU without native bf16")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 128 x 128 crop of a real photo (face, hair, hat), (H, W, 3) uint8."""
    return skimage_data.astronaut()[60:60 + SIZE, 160:160 + SIZE].copy()


@pytest.fixture(scope="module")
def tensor(image) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def ncnn_net():
    param, weights = zoo.package_files(zoo.MODELS["df2k"])
    net = ncnn.Net()
    net.opt.num_threads = 2
    net.load_param(str(param))
    net.load_model(str(weights))
    return net


def ncnn_upscale(net, chw: np.ndarray) -> np.ndarray:
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(chw))
    _, out = extractor.extract("output")
    return np.array(out)


def run_ncnn(benchmark, ncnn_net, tensor) -> None:
    chw = tensor[0].numpy().copy()
    out = benchmark.pedantic(ncnn_upscale, args=(ncnn_net, chw), **ROUNDS)
    assert out.shape == (3, 4 * SIZE, 4 * SIZE)


def run_ours(benchmark, tensor, **kwargs) -> None:
    upscaler = Upscaler("df2k", **kwargs)
    out = benchmark.pedantic(upscaler.upscale_tensor, args=(tensor,), **ROUNDS)
    assert out.shape == (1, 3, 4 * SIZE, 4 * SIZE)


@pytest.mark.benchmark(group="upscale 128x128 x4: fp32")
def test_fp32_ours(benchmark, tensor) -> None:
    run_ours(benchmark, tensor, device="cpu", precision="fp32")


@pytest.mark.benchmark(group="upscale 128x128 x4: fp32")
def test_fp32_ncnn(benchmark, ncnn_net, tensor) -> None:
    run_ncnn(benchmark, ncnn_net, tensor)


@NATIVE_BF16
@pytest.mark.benchmark(group="upscale 128x128 x4: bf16")
def test_bf16_ours(benchmark, tensor) -> None:
    run_ours(benchmark, tensor, device="cpu", precision="bf16")


@NATIVE_BF16
@pytest.mark.benchmark(group="upscale 128x128 x4: bf16")
def test_bf16_ncnn(benchmark, ncnn_net, tensor) -> None:
    run_ncnn(benchmark, ncnn_net, tensor)


@pytest.mark.benchmark(group=f"upscale 128x128 x4: tiled (64 + {DEFAULT_TILE_PAD} px) vs whole, fp32")
def test_tiled_ours(benchmark, tensor) -> None:
    run_ours(benchmark, tensor, device="cpu", precision="fp32", tile=64, tile_pad=DEFAULT_TILE_PAD)


@pytest.mark.benchmark(group=f"upscale 128x128 x4: tiled (64 + {DEFAULT_TILE_PAD} px) vs whole, fp32")
def test_tiled_whole(benchmark, tensor) -> None:
    run_ours(benchmark, tensor, device="cpu", precision="fp32")


@pytest.mark.benchmark(group="upscale 512x512 x4 on CUDA: fp16 vs fp32")
@pytest.mark.parametrize("device", [pytest.param("cuda", marks=CUDA)])
def test_cuda_fp16_ours(benchmark, device) -> None:
    x = torch.rand(1, 3, 512, 512, device=device)
    upscaler = Upscaler("df2k", device=device, precision="fp16")
    benchmark.pedantic(lambda: upscaler.upscale_tensor(x), **ROUNDS)


@pytest.mark.benchmark(group="upscale 512x512 x4 on CUDA: fp16 vs fp32")
@pytest.mark.parametrize("device", [pytest.param("cuda", marks=CUDA)])
def test_cuda_fp32(benchmark, device) -> None:
    x = torch.rand(1, 3, 512, 512, device=device)
    upscaler = Upscaler("df2k", device=device, precision="fp32")
    benchmark.pedantic(lambda: upscaler.upscale_tensor(x), **ROUNDS)
