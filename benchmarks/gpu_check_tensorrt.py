"""The TensorRT part of the one-call GPU check (benchmarks/gpu_check.py calls `tensorrt_checks`).

    python benchmarks/gpu_check_tensorrt.py [--out DIR]   # where `import tensorrt` and CUDA work

Runs where TensorRT and a GPU are present; `tensorrt_checks` raises `Unavailable` (with the
reason) elsewhere. Each check records its numbers; a check that fails raises AssertionError with
the numbers in the message. Checks, in order:

1. build: a tiny full-range model's engine, built twice with one timing cache (the second build
   reads it: its time is reported), and a stale cache from "another GPU" replaced, not fatal;
2. padding: df2k in torch on a 40x48 crop, as it is and edge-padded to 64 px (what the old
   runner did): the PSNR between them (expected well under 45 dB) and the engine's PSNR against
   the unpadded IEEE fp32 output (must be >= 45 dB);
3. cuda_graphs: alternating tile shapes with --cuda-graph, outputs equal to the graph-less
   runner's, and GPU memory after 3 rounds of more shapes than the graph cache holds no higher than
   after the first (bounded cache);
4. streams: the runner called on torch's default stream and on a side stream gives equal outputs;
5. truncated: an engine file cut in half is refused with RealSRError, not a crash;
6. df2k: the default-profile df2k engine against torch in IEEE fp32 (>= 45 dB) on 256 px, and
   latency against torch fp16 on identical work (`Upscaler.upscale_tensor`, same tile and pad).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Unavailable(Exception):
    """TensorRT or a GPU is missing here; the message says which."""


def _psnr(a, b) -> float:
    import math

    mse = float(((a.double().cpu() - b.double().cpu()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _crop(height: int, width: int):
    import torch
    from skimage import data

    image = data.astronaut()[40:40 + height, 150:150 + width]
    return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255


def _ieee_fp32():
    from realsr_fast.device import ieee_fp32

    return ieee_fp32()


def _median_seconds(fn, repeats: int = 10) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def full_range_tiny():
    """A tiny seeded RRDBNet whose outputs on photos span most of [0, 1] (a random one stays near 0,
    where a 10 % error still scores 45 dB). `tests/test_tensorrt.py` checks engines with it too."""
    import torch

    from realsr_fast.models.rrdbnet import RRDBNet

    torch.manual_seed(3)
    model = RRDBNet(nf=16, nb=2, gc=8).eval()
    with torch.no_grad():
        y = model(_crop(32, 32))
        model.conv_last.weight.mul_(0.3 / float(y.std()))
        model.conv_last.bias.add_(0.5 - 0.3 * float(y.mean()) / float(y.std()))
    return model


def check_build(folder: Path) -> dict:
    from realsr_fast.export.tensorrt_build import Profile, export_tensorrt

    model, engine, cache = full_range_tiny(), folder / "tiny.engine", folder / "tiny.timing"
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        export_tensorrt(model, engine, Profile(8, 64, 128), cache, tile_pad=4)
        seconds.append(time.perf_counter() - start)
    cache.write_bytes(b"a timing cache from another GPU")
    export_tensorrt(model, folder / "stale.engine", Profile(8, 64, 128), cache, tile_pad=4)
    assert cache.stat().st_size > 100, "the stale timing cache was not replaced"
    return {"first_build_s": seconds[0], "cached_build_s": seconds[1], "stale_cache": "replaced"}


def check_padding(df2k_runner, df2k) -> dict:
    import torch

    x = _crop(40, 48)
    with torch.no_grad(), _ieee_fp32():
        exact = df2k.cuda()(x.cuda()).clamp(0, 1)
        padded = df2k(torch.nn.functional.pad(x.cuda(), (0, 16, 0, 24), mode="replicate"))
    padded_db = _psnr(padded[..., :160, :192].clamp(0, 1), exact)
    engine_db = _psnr(df2k_runner(x.cuda()), exact)
    assert engine_db >= 45, f"engine on a 40x48 tile: {engine_db:.1f} dB vs IEEE fp32"
    return {"edge_padded_vs_exact_db": padded_db, "engine_vs_exact_db": engine_db}


def check_cuda_graphs(engine: Path) -> dict:
    import torch

    from realsr_fast.inference import tensorrt_runner
    from realsr_fast.inference.tensorrt_runner import TensorRTRunner

    device = torch.device("cuda")
    plain = TensorRTRunner(engine, device)
    graphs = TensorRTRunner(engine, device, cuda_graph=True)
    sizes = [(8 + 8 * i, 120 - 8 * i) for i in range(tensorrt_runner.GRAPH_CACHE + 3)]
    worst, memory, device_used = float("inf"), [], []
    for _ in range(3):
        for size in sizes:
            x = _crop(*size).cuda()
            worst = min(worst, _psnr(graphs(x), plain(x)))
        torch.cuda.synchronize()
        memory.append(torch.cuda.memory_allocated())
        free, total = torch.cuda.mem_get_info()
        device_used.append(total - free)  # graphs' own memory is outside torch's allocator
    assert worst >= 60, f"graph replay differs from plain runs: {worst:.1f} dB"
    assert memory[-1] <= memory[0], f"torch memory grows over rounds: {memory}"
    assert device_used[-1] <= device_used[0] + (64 << 20), f"GPU memory grows: {device_used}"
    return {"shapes": len(sizes), "graph_vs_plain_db": worst, "allocated_bytes": memory,
            "device_used_bytes": device_used}


def check_streams(engine: Path) -> dict:
    import torch

    from realsr_fast.inference.tensorrt_runner import TensorRTRunner

    runner = TensorRTRunner(engine, torch.device("cuda"))
    x = _crop(64, 48).cuda()
    on_default = runner(x)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        on_side = runner(x)
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(on_default, on_side), "side stream output differs"
    return {"default_vs_side": "equal"}


def check_truncated(engine: Path, folder: Path) -> dict:
    import shutil

    import torch

    from realsr_fast.errors import RealSRError
    from realsr_fast.export.tensorrt_build import sidecar_path
    from realsr_fast.inference.tensorrt_runner import TensorRTRunner

    cut = folder / "cut.engine"
    cut.write_bytes(engine.read_bytes()[: engine.stat().st_size // 2])
    shutil.copy(sidecar_path(engine), sidecar_path(cut))
    try:
        TensorRTRunner(cut, torch.device("cuda"))
    except RealSRError as exc:
        return {"truncated_engine": f"refused: {str(exc)[:80]}"}
    raise AssertionError("a truncated engine was loaded")


def check_df2k(folder: Path) -> dict:
    from realsr_fast.inference.upscaler import Upscaler

    x = _crop(256, 256).cuda()
    settings = dict(tile=256, tile_pad=24)
    with _ieee_fp32():
        reference = Upscaler("df2k", device="cuda", precision="fp32", **settings).upscale_tensor(x)
    engine = folder / "df2k.engine"
    start = time.perf_counter()
    trt = Upscaler("df2k", device="cuda", backend="tensorrt", engine=engine, **settings)
    build_s = time.perf_counter() - start
    fp16 = Upscaler("df2k", device="cuda", precision="fp16", **settings)
    trt_db, fp16_db = _psnr(trt.upscale_tensor(x), reference), _psnr(fp16.upscale_tensor(x), reference)
    trt_s = _median_seconds(lambda: trt.upscale_tensor(x))
    fp16_s = _median_seconds(lambda: fp16.upscale_tensor(x))
    assert trt_db >= 45, f"df2k engine: {trt_db:.1f} dB vs IEEE fp32"
    return {"build_s": build_s, "tensorrt_db": trt_db, "torch_fp16_db": fp16_db,
            "tensorrt_s": trt_s, "torch_fp16_s": fp16_s, "speedup": fp16_s / trt_s,
            "engine": str(engine)}


def tensorrt_checks() -> dict:
    """Every check above; {check: numbers}. Raises Unavailable without TensorRT or a GPU, and
    AssertionError (after running the rest) naming the checks that failed."""
    import torch

    try:
        import tensorrt
    except ImportError as exc:
        raise Unavailable(f"import tensorrt failed: {exc}") from exc
    if not torch.cuda.is_available():
        raise Unavailable("CUDA is not available")
    from realsr_fast.inference.tensorrt_runner import TensorRTRunner
    from realsr_fast.models.loading import load_model

    results: dict = {"tensorrt_version": tensorrt.__version__, "gpu": torch.cuda.get_device_name()}
    failures = []
    with tempfile.TemporaryDirectory(prefix="realsr_trt_check_") as name:
        folder = Path(name)
        tiny = folder / "tiny.engine"

        def run(check, *args) -> None:
            try:
                results[check.__name__.removeprefix("check_")] = check(*args)
            except Exception as exc:  # a failed check must not hide the others' numbers
                failures.append(check.__name__)
                results[check.__name__.removeprefix("check_")] = {"failed": repr(exc)}

        run(check_build, folder)
        if tiny.is_file():
            run(check_cuda_graphs, tiny)
            run(check_streams, tiny)
            run(check_truncated, tiny, folder)
        run(check_df2k, folder)
        df2k_engine = folder / "df2k.engine"
        if df2k_engine.is_file():
            df2k = load_model("df2k").eval()
            runner = TensorRTRunner(df2k_engine, torch.device("cuda"), fallback=df2k.cuda())
            run(check_padding, runner, df2k)
    if failures:
        raise AssertionError(f"TensorRT checks failed: {failures}; results: {json.dumps(results, default=str)}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    try:
        results, status = tensorrt_checks(), 0
    except Unavailable as why:
        results, status = {"skipped": str(why)}, 0
    except AssertionError as failed:
        results, status = {"failed": str(failed)}, 1
    from realsr_fast.io import atomic_write

    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "gpu_check_tensorrt.json", "w") as f:
        json.dump(results, f, indent=2, default=str)
    print(json.dumps(results, indent=2, default=str))
    return status


if __name__ == "__main__":
    from gpu_check import use_package  # run as a script, this folder is first on sys.path

    use_package()  # this checkout's realsr_fast if it has the compiled ops, else the installed one
    sys.exit(main())
