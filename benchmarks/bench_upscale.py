"""Upscaling one image x4 with the default model (RealSR DF2K): ours vs the ncnn package, timed
in the same run on the same photo, 2 threads each.

    python -m pytest benchmarks/bench_upscale.py --benchmark-json benchmarks/results/upscale_cpu.json
    python benchmarks/ratios.py benchmarks/results/upscale_cpu.json

The table by input size alone (128², 256², 512², 500x375, a 1000x750 photo; `-k 128x128` for one size):

    python -m pytest benchmarks/bench_upscale.py -k by_size --benchmark-json benchmarks/results/upscale_sizes_cpu.json
    python benchmarks/ratios.py benchmarks/results/upscale_sizes_cpu.json

Groups (the `_ours` row is the reference of each):
- fp32: `Upscaler(precision="fp32")` (its Winograd trunk, docs/winograd.md) vs the ncnn package
  running the same REALSR_DF2K_UP4X .param/.bin with its default CPU options, and vs stock
  PyTorch (the same RRDBNet's forward: eager, channels_last, inference mode);
- bf16: `Upscaler(precision="bf16")` vs the same ncnn run;
- tiling: one 128 x 128 image in 4 tiles of 64 (+ the default 24 px of context) vs in one piece (fp32);
- cuda (with a GPU): fp16 vs fp32 on the GPU;
- by size (`test_by_size_*`, one group per input size): what `realsr upscale` runs by default
  (`backend="auto"`, the reference row) vs the ncnn package alone, and each of our paths forced:
  torch fp32 (Winograd trunk), torch bf16 (Winograd trunk, bf16 GEMMs), and our ncnn backend
  (fp32 on the CPU); and stock PyTorch: the same RRDBNet's own forward (oneDNN direct
  convolutions, channels-last, inference mode, whole image), in fp32 and (CPUs with native bf16)
  in bf16, the baselines of the Winograd trunk; and the other CPU engines people deploy
  on, each over the same network's fp32 ONNX graph (as `realsr export --format onnx` writes it),
  whole image, 2 threads (optional extras, skipped with the reason when absent): ONNX Runtime's CPU
  provider (all graph optimisations), and OpenVINO's CPU plugin compiled for the image's shape in
  fp32 (`INFERENCE_PRECISION_HINT f32`) and with the plugin's own default precision (bf16 on CPUs
  with native bf16, as OpenVINO users get it).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.models.loading import load_model
from realsr_fast.tiling import DEFAULT_TILE_PAD

ncnn = pytest.importorskip("ncnn")
skimage_data = pytest.importorskip("skimage.data")
import ncnn_package_upscale as ncnn_package  # noqa: E402  (beside this file; needs ncnn)

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
    """The ncnn package over the default model's .param/.bin, 2 threads (its default CPU options)."""
    return ncnn_package.network()


def run_ncnn(benchmark, ncnn_net, tensor) -> None:
    chw = tensor[0].numpy().copy()
    out = benchmark.pedantic(ncnn_package.run, args=(ncnn_net, chw), **ROUNDS)
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


@pytest.mark.benchmark(group="upscale 128x128 x4: fp32")
def test_fp32_stock_torch(benchmark, tensor) -> None:
    """Stock PyTorch: the same RRDBNet's own forward, the baseline of the Winograd trunk."""
    network = stock_network()
    out = benchmark.pedantic(stock_forward, args=(network, tensor), **ROUNDS)
    assert out.shape == (1, 3, 4 * SIZE, 4 * SIZE)


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


# --- by input size: the default (auto) vs the ncnn package vs each of our paths ---------------

SIZES = {  # (H, W) crops of real photos
    "128x128": lambda: skimage_data.astronaut()[60:188, 160:288],
    "256x256": lambda: skimage_data.astronaut()[0:256, 128:384],
    "512x512": lambda: skimage_data.astronaut(),
    "500x375": lambda: skimage_data.coffee()[0:375, 50:550],
    "1000x750": lambda: skimage_data.hubble_deep_field()[61:811, 0:1000],
}
FORCED = {  # Upscaler options of each of our paths, forced
    "torch_fp32": dict(backend="torch", precision="fp32"),
    "torch_bf16": dict(backend="torch", precision="bf16"),
    "ncnn_backend": dict(backend="ncnn"),
}


def stock_network(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The default model as stock PyTorch runs it best on a CPU: eval mode, channels-last."""
    return load_model("df2k").eval().to(dtype, memory_format=torch.channels_last)


def stock_forward(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    dtype = next(network.parameters()).dtype
    with torch.inference_mode():
        return network(x.to(dtype).contiguous(memory_format=torch.channels_last)).float().clamp_(0, 1)


@pytest.fixture(scope="module")
def onnx_graph(tmp_path_factory):
    """The default model's fp32 ONNX graph (dynamic batch, height and width)."""
    from realsr_fast.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "df2k-fp32.onnx"
    export_onnx(load_model("df2k"), path, precision="fp32")
    return path


def onnxruntime_run(graph, image_shape: tuple[int, int]):
    """`x (1, 3, H, W) float32 numpy -> (1, 3, 4H, 4W)` by ONNX Runtime's CPU provider, 2 threads."""
    ort = pytest.importorskip("onnxruntime")
    from realsr_fast.export.onnx_export import INPUT_NAME

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {INPUT_NAME: x})[0]


def openvino_run(graph, image_shape: tuple[int, int], precision: str | None):
    """The same by OpenVINO's CPU plugin, compiled for this (1, 3, H, W) input, 2 threads;
    `precision` f32, or None for the plugin's default."""
    ov = pytest.importorskip("openvino")
    core = ov.Core()
    model = core.read_model(str(graph))
    model.reshape([1, 3, *image_shape])
    config = {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: request.infer([x])[compiled.output(0)]


PEERS = {  # ONNX engines over the same graph: (H, W), graph -> run(x)
    "onnxruntime": onnxruntime_run,
    "openvino_fp32": lambda graph, shape: openvino_run(graph, shape, "f32"),
    "openvino_default": lambda graph, shape: openvino_run(graph, shape, None),
}


def run_by_size(benchmark, size: str, **options) -> None:
    benchmark.group = f"upscale {size} x4 by path"
    image = np.ascontiguousarray(SIZES[size]())
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    if options.pop("package", False):
        net = options["net"]
        out = benchmark.pedantic(ncnn_package.run, args=(net, x[0].numpy().copy()), **ROUNDS)[None]
    elif "peer" in options:
        run = PEERS[options["peer"]](options["graph"], image.shape[:2])
        out = benchmark.pedantic(run, args=(x.numpy().copy(),), **ROUNDS)
    elif "stock" in options:
        network = stock_network(options["stock"])
        out = benchmark.pedantic(stock_forward, args=(network, x), **ROUNDS)
    else:
        upscaler = Upscaler("df2k", device="cpu", **options)
        out = benchmark.pedantic(upscaler.upscale_tensor, args=(x,), **ROUNDS)
    assert out.shape == (1, 3, 4 * image.shape[0], 4 * image.shape[1])


@pytest.mark.parametrize("size", SIZES)
def test_by_size_auto_ours(benchmark, size) -> None:
    """What `realsr upscale` runs by default on this CPU."""
    run_by_size(benchmark, size, backend="auto")


@pytest.mark.parametrize("path", FORCED)
@pytest.mark.parametrize("size", SIZES)
def test_by_size_forced(benchmark, size, path) -> None:
    run_by_size(benchmark, size, **FORCED[path])


@pytest.mark.parametrize("size", SIZES)
def test_by_size_stock_torch(benchmark, size) -> None:
    """Stock PyTorch: RRDBNet.forward in fp32 (what the torch backend ran before its Winograd trunk)."""
    run_by_size(benchmark, size, stock=torch.float32)


@NATIVE_BF16
@pytest.mark.parametrize("size", SIZES)
def test_by_size_stock_torch_bf16(benchmark, size) -> None:
    """Stock PyTorch in bf16: what the torch backend's bf16 ran before its Winograd trunk."""
    run_by_size(benchmark, size, stock=torch.bfloat16)


@pytest.mark.parametrize("size", SIZES)
def test_by_size_ncnn_package(benchmark, size, ncnn_net) -> None:
    """The ncnn package alone with its default CPU options, as realsr-ncnn-vulkan users run it."""
    run_by_size(benchmark, size, package=True, net=ncnn_net)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("size", SIZES)
def test_by_size_onnx_engines(benchmark, size, peer, onnx_graph) -> None:
    """ONNX Runtime and OpenVINO over the same network's ONNX graph, whole image."""
    run_by_size(benchmark, size, peer=peer, graph=onnx_graph)
