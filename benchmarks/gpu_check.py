"""The one command that proves the GPU half of realsr_fast, and its CPU dry run.

    python benchmarks/gpu_check.py                 # on a machine with one NVIDIA GPU (about 8 min on an H100)
    python benchmarks/gpu_check.py --dry-run       # anywhere: tiny sizes, CPU fallbacks (tests/test_gpu_check.py)

Stages, in order; each records ok / failed / skipped (with the reason) and its numbers, and a failed
stage does not stop the others:

1. build: the extension for this GPU's architecture only (``TORCH_CUDA_ARCH_LIST=<major.minor>``),
   then checks that the ops have CUDA kernels. Dry run: checks the existing build's CPU kernels.
2. cuda_tests: ``pytest -m cuda tests/`` (dry run: the op test files, where they all skip).
3. ops: every compiled op against its best stock-PyTorch composition on the same device: largest
   difference and the time ratio; for degrade also the big job (64 x 3 x 2048^2 uint8, k 33, x4)
   against the FP32 FMA-bound time, where the GPU's clock is known.
4. kernelgan: KernelGAN at batch 64 (dry run: 2), images per second for 3000 iterations.
5. upscaler: ``realsr_fast.Upscaler`` fp16 against fp32 (dry run: bf16 on the CPU): PSNR and speed.
6. tensorrt: ``gpu_check_tensorrt.tensorrt_checks`` (engine build and timing-cache reuse, padded vs
   unpadded accuracy, CUDA graphs over alternating shapes and their memory, default vs side stream,
   a truncated engine, df2k engine >= 45 dB against IEEE fp32 and its latency against torch fp16);
   skipped with the reason when TensorRT is missing. Dry run: the ONNX export and ONNX Runtime on
   the CPU instead (the same graph path up to the engine).
7. train_step: one training step with on-the-fly degradation (real config; dry run: a tiny one)
   and the degradation's share of it.

Writes ``gpu_check.json`` and ``gpu_check.md`` (a table) into ``--out`` (default
benchmarks/results/, dry run: a temporary folder unless given). Exit status 1 if a stage failed.
The package's entry points it uses are gathered in ``_api()`` (other modules move in refactors).

Which realsr_fast it checks (``use_package``, named in the report as ``package``): this checkout's
when its ``realsr_fast/`` holds the compiled ops (an editable install, or the build stage's in-place
build), else the installed one (``pip install .`` compiles into site-packages and leaves the source
tree without ``_C``, and the source tree is then kept off ``sys.path`` so that it cannot shadow it).
"""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OP_TEST_FILES = ["tests/test_degrade.py", "tests/test_patch_stats.py", "tests/test_batchnorm_relu.py",
                 "tests/test_correlation_grad.py"]
SKIPPED, OK, FAILED = "skipped", "ok", "failed"


class Skip(Exception):
    """A stage that cannot run here; its message says why."""


def _has_compiled_ops(package: Path) -> bool:
    """Whether the package folder `package` holds the extension (``_C`` with an extension suffix)."""
    return any((package / f"_C{suffix}").is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _same_folder(entry: str, folder: Path) -> bool:
    try:
        return Path(entry or ".").resolve() == folder
    except OSError:
        return False


def use_package() -> Path:
    """Makes ``import realsr_fast`` load a package that has the compiled ops; returns its folder.

    This checkout's when its ``realsr_fast/`` has ``_C`` (put first on ``sys.path``); else the
    installed package, with every ``sys.path`` entry naming the checkout removed (``''`` and the
    current folder included when it is the checkout). A package already imported is kept.

    Raises:
        SystemExit: neither this checkout nor an installed realsr_fast has the compiled ops.
    """
    loaded = sys.modules.get("realsr_fast")
    if loaded is not None and loaded.__file__:
        return Path(loaded.__file__).resolve().parent
    source = ROOT / "realsr_fast"
    if _has_compiled_ops(source):
        sys.path.insert(0, str(ROOT))
        return source
    sys.path[:] = [entry for entry in sys.path if not _same_folder(entry, ROOT)]
    spec = importlib.util.find_spec("realsr_fast")
    installed = Path(spec.origin).resolve().parent if spec is not None and spec.origin else None
    if installed is None or not _has_compiled_ops(installed):
        found = f"the installed one ({installed}) has none either" if installed else "none is installed"
        raise SystemExit(f"gpu_check: {source} has no compiled ops (_C) and {found}; build them with "
                         "`pip install --no-build-isolation -e .` (or `pip install --no-build-isolation .`)")
    return installed


def _api():
    """The package entry points the stages call (one place to update when modules move)."""
    import realsr_fast
    from realsr_fast import ops
    from realsr_fast.export.onnx_export import export_onnx
    from realsr_fast.kernel_estimation.kernelgan.crops import prepare_image
    from realsr_fast.kernel_estimation.kernelgan.training import train_kernelgan
    from realsr_fast.models import load_model
    from realsr_fast.train.config import load_config
    from realsr_fast.train.distributed import DistContext
    from realsr_fast.train.trainer import Trainer

    return argparse.Namespace(
        Upscaler=realsr_fast.Upscaler, ops=ops, export_onnx=export_onnx, load_model=load_model,
        prepare_image=prepare_image, train_kernelgan=train_kernelgan, load_config=load_config,
        DistContext=DistContext, Trainer=Trainer)


def _median_seconds(fn: Callable[[], object], device: str, repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up, synchronising the GPU around each."""
    import torch

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _back_to_back_seconds(fn: Callable[[], object], device: str, calls: int) -> float:
    """Seconds per call of `calls` calls issued back to back with one synchronisation at the end: what a
    training loop sees of an op that never waits for the GPU (launch latency overlaps the previous call)."""
    import torch

    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls


def _psnr(a, b) -> float:
    mse = float(((a.double().cpu() - b.double().cpu()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


# --- stages ---------------------------------------------------------------------------------------


def stage_build(ctx) -> dict:
    import torch

    from realsr_fast import _C

    if ctx.dry_run:
        has_cpu = torch._C._dispatch_has_kernel_for_dispatch_key("realsr_fast::degrade", "CPU")
        if not has_cpu:
            raise RuntimeError("the existing build has no CPU kernel for realsr_fast::degrade")
        return dict(note="dry run: no build; the existing extension's CPU kernels are registered",
                    extension=Path(_C.__file__).name, would_run=ctx.build_command)
    if ctx.build_result is None:
        raise Skip("--no-build: using the extension as it is")
    missing = [op for op in ("degrade", "patch_stats", "batchnorm_relu", "batchnorm_relu_backward",
                             "correlation_kernel_grad")
               if not torch._C._dispatch_has_kernel_for_dispatch_key(f"realsr_fast::{op}", "CUDA")]
    if missing:
        raise RuntimeError(f"no CUDA kernel for {', '.join(missing)} after the build")
    return ctx.build_result


def stage_cuda_tests(ctx) -> dict:
    files = [str(ROOT / path) for path in (OP_TEST_FILES if ctx.dry_run else ["tests/"])]
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
               "-c", str(ROOT / "pyproject.toml"), *files]
    env = dict(os.environ)
    if ctx.package == ROOT / "realsr_fast":
        env["PYTHONPATH"] = str(ROOT)
    else:  # the installed package: pytest must not put the checkout (conftest.py's folder) on sys.path
        command.insert(command.index("-q"), "--import-mode=importlib")
    # cwd: a folder without a realsr_fast/ (`python -m` puts the working folder first on sys.path)
    result = subprocess.run(command, cwd=ctx.scratch, capture_output=True, text=True, timeout=240, check=False,
                            env=env)
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    if result.returncode not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"cuda tests failed: {summary}\n{result.stdout[-3000:]}")
    return dict(summary=summary, command=" ".join(command[2:]))


def _separable_patch_stats(img, patch: int, stride: int):
    """patch_stats from stock PyTorch with separable box filters (two 1-D avg_pool2d calls)."""
    import torch.nn.functional as F

    ops = _api().ops
    grey = ops.grey_reference(img).unsqueeze(1)

    def box(x):
        return F.avg_pool2d(F.avg_pool2d(x, (patch, 1), (stride, 1)), (1, patch), (1, stride))

    mean = box(grey)
    var = (box(grey * grey) - mean * mean).clamp_min(0)
    return mean[:, 0].float(), var[:, 0].float()


def _op_cases(ctx):
    """(name, ours, [stock compositions], sizes) for every op, at the stage's sizes."""
    import torch

    api, dev, g = _api(), ctx.device, torch.Generator().manual_seed(13)
    ops = api.ops
    tiny = ctx.dry_run

    def degrade_args(batch, size, k, scale, bank, noise=True):
        kernels = torch.rand(batch, k, k, generator=g)
        out = -(-size // scale)
        args = dict(hr=torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g).to(dev),
                    kernels=(kernels / kernels.sum(dim=(1, 2), keepdim=True)).to(dev), scale=scale, quantize=True)
        if noise:
            args.update(noise_bank=torch.randint(0, 256, (bank[0], 3, bank[1], bank[1]), dtype=torch.uint8, generator=g).to(dev),
                        noise_index=torch.randint(0, bank[0], (batch,), generator=g).to(dev),
                        noise_offset=torch.randint(0, bank[1] - out + 1, (batch, 2), generator=g).to(dev))
        return args

    train = degrade_args(2, 24, 5, 2, (3, 16)) if tiny else degrade_args(16, 128, 33, 4, (64, 256))
    yield ("degrade: training batch", lambda: ops.degrade(**train), [lambda: ops.degrade_reference(**train)],
           "2x3x24^2 k5 x2 noise" if tiny else "16x3x128^2 uint8 k33 x4 noise, quantised")
    big = degrade_args(2, 64, 9, 4, None, noise=False) if tiny else degrade_args(64, 2048, 33, 4, None, noise=False)
    yield ("degrade: big job", lambda: ops.degrade(**big), [lambda: ops.degrade_reference(**big)],
           "2x3x64^2 k9 x4" if tiny else "64x3x2048^2 uint8 k33 x4")
    img = torch.randint(0, 256, (1, 3, 40, 50) if tiny else (1, 3, 1356, 2040), dtype=torch.uint8, generator=g).to(dev)
    patch, stride = (8, 4) if tiny else (256, 16)
    yield ("patch_stats", lambda: ops.patch_stats(img, patch, stride),
           [lambda: ops.patch_stats_reference(img, patch, stride), lambda: _separable_patch_stats(img, patch, stride)],
           f"{tuple(img.shape)} patch {patch} stride {stride}")
    rows, cols = (8, 20) if tiny else (2048, 400)
    x = torch.randn(rows, cols, generator=g).to(dev)
    w, b = torch.rand(rows, generator=g).to(dev) + 0.5, torch.randn(rows, generator=g).to(dev)
    yield ("batchnorm_relu", lambda: ops.batchnorm_relu(x, w, b), [lambda: ops.batchnorm_relu_reference(x, w, b)],
           f"{rows} rows x {cols}")
    images, side, out, size = (2, 20, 4, 7) if tiny else (16, 64, 26, 13)
    xs = torch.randn(3, images, side, side, generator=g).to(dev)
    gs = torch.randn(3, images, out, out, generator=g).to(dev)
    yield ("correlation_kernel_grad", lambda: ops.correlation_kernel_grad(xs, gs, 2, size),
           [lambda: ops.correlation_kernel_grad_reference(xs, gs, 2, size)],
           f"x {tuple(xs.shape)}, grad {tuple(gs.shape)}, stride 2, size {size}")


def _max_difference(a, b) -> float:
    import torch

    pairs = zip(a, b) if isinstance(a, tuple) else [(a, b)]
    return max(float((torch.as_tensor(p).double() - torch.as_tensor(q).double()).abs().max()) if p.numel() else 0.0
               for p, q in pairs)


def _fma_bound_seconds(ctx, fmas: float) -> float | None:
    """FP32 FMA-bound time on this GPU (128 FP32 lanes per SM, Volta and later), if its clock is known."""
    import torch

    props = torch.cuda.get_device_properties(0)
    clock_khz = getattr(props, "clock_rate", None)
    if not clock_khz:
        return None
    return fmas / (props.multi_processor_count * 128 * clock_khz * 1e3)


def stage_ops(ctx) -> dict:
    results = {}
    repeats = 3 if ctx.dry_run else 10
    for name, ours, stocks, sizes in _op_cases(ctx):
        want = stocks[0]()
        got = ours()
        if isinstance(got, tuple):
            got, want = tuple(t.float() for t in got), tuple(t.float() for t in want)
        else:
            got, want = got.float(), want.float()
        t_ours = _median_seconds(ours, ctx.device, repeats)
        t_stock = min(_median_seconds(fn, ctx.device, repeats) for fn in stocks)
        b2b_ours = _back_to_back_seconds(ours, ctx.device, 5 * repeats)
        b2b_stock = min(_back_to_back_seconds(fn, ctx.device, 5 * repeats) for fn in stocks)
        row = dict(sizes=sizes, max_difference=_max_difference(got, want), ours_ms=1e3 * t_ours,
                   best_stock_ms=1e3 * t_stock, speedup=t_stock / t_ours, back_to_back_ours_ms=1e3 * b2b_ours,
                   back_to_back_stock_ms=1e3 * b2b_stock, back_to_back_speedup=b2b_stock / b2b_ours)
        if name.startswith("degrade"):  # quantised: a sum that lands on a rounding tie may go either way
            row["differing_fraction"] = float((got.double() - want.double()).abs().gt(1e-6).double().mean())
        if name == "degrade: big job" and ctx.device == "cuda":
            bound = _fma_bound_seconds(ctx, 64 * 3 * 512 * 512 * 33 * 33)
            row["fma_bound_ms"] = None if bound is None else 1e3 * bound
            row["times_fma_bound"] = None if bound is None else t_ours / bound
        results[name] = row
    # patch_stats: 0..255-scale variances of float64 box filters. degrade: outputs quantised to 1/255,
    # where float32 sums in another order may round a tie the other way: one level, on few samples.
    one_level = 1 / 255 + 1e-6
    tolerance = {"patch_stats": 1e-2, "degrade: training batch": one_level, "degrade: big job": one_level}
    bad = [n for n, r in results.items()
           if r["max_difference"] > tolerance.get(n, 2e-3) or r.get("differing_fraction", 0) > 1e-3]
    if bad:
        raise RuntimeError(f"ops differ from their stock compositions: {bad}: {results}")
    return results


def _kernelgan_image(api, seed: int, side: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.random((side // 8 + 1, side // 8 + 1, 3)), np.ones((8, 8, 1)))[:side, :side]
    return api.prepare_image((np.clip(blocks + 0.05 * rng.standard_normal(blocks.shape), 0, 1) * 255).astype(np.uint8))


def stage_kernelgan(ctx) -> dict:
    api = _api()
    batch, iterations, side = (2, 2, 96) if ctx.dry_run else (64, 64, 200)  # KernelGAN needs >= 84 px
    images = [_kernelgan_image(api, i, side) for i in range(batch)]
    seconds = _median_seconds(lambda: api.train_kernelgan(images, list(range(batch)), iterations, "collapsed", ctx.device),
                              ctx.device, 1 if ctx.dry_run else 2)
    per_iteration = seconds / iterations
    return dict(batch=batch, iterations=iterations, image_side=side, ms_per_iteration=1e3 * per_iteration,
                images_per_second_3000_iterations=batch / (3000 * per_iteration))


def _photo(side: int):
    import torch
    from skimage import data

    image = data.astronaut()[40:40 + side, 150:150 + side]
    return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255


def stage_upscaler(ctx) -> dict:
    api = _api()
    side, low = (12, "bf16") if ctx.dry_run else (256, "fp16")
    x = _photo(side)
    fp32 = api.Upscaler("df2k", device=ctx.device, precision="fp32")
    half = api.Upscaler("df2k", device=ctx.device, precision=low)
    repeats = 1 if ctx.dry_run else 5
    t32 = _median_seconds(lambda: fp32.upscale_tensor(x), ctx.device, repeats)
    t16 = _median_seconds(lambda: half.upscale_tensor(x), ctx.device, repeats)
    return {"tile": side, "low_precision": half.precision, f"psnr_{low}_vs_fp32_db": _psnr(half.upscale_tensor(x), fp32.upscale_tensor(x)),
            "fp32_ms": 1e3 * t32, f"{low}_ms": 1e3 * t16, "speedup": t32 / t16}


def stage_tensorrt(ctx) -> dict:
    api = _api()
    if ctx.dry_run:  # the CPU fallback: the same model exported to ONNX, run by ONNX Runtime
        x = _photo(12)
        path = Path(ctx.scratch) / "df2k_fp32.onnx"
        api.export_onnx(api.load_model("df2k"), path)
        backend = api.Upscaler("df2k", device="cpu", precision="fp32", tile_pad=8, backend="onnx", onnx=path)
        reference = api.Upscaler("df2k", device="cpu", precision="fp32")
        t_onnx = _median_seconds(lambda: backend.upscale_tensor(x), "cpu", 1)
        t_torch = _median_seconds(lambda: reference.upscale_tensor(x), "cpu", 1)
        return dict(note="dry run: TensorRT needs a GPU; ONNX Runtime fp32 on the CPU instead", tile=12,
                    psnr_onnxruntime_vs_torch_fp32_db=_psnr(backend.upscale_tensor(x), reference.upscale_tensor(x)),
                    onnxruntime_ms=1e3 * t_onnx, torch_fp32_ms=1e3 * t_torch)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_check_tensorrt import Unavailable, tensorrt_checks

    try:
        return tensorrt_checks()
    except Unavailable as why:
        raise Skip(str(why)) from None


def stage_train_step(ctx) -> dict:
    import warnings

    api = _api()
    cuda = ctx.device == "cuda"
    overrides = ["data.hr=builtin:samples", "data.kernels=builtin:synthetic", "data.noise=builtin:synthetic",
                 "data.workers=0", "generator.init=null", "loss.vgg_random_init_test_only=true",
                 f"run.device={ctx.device}", f"run.out={Path(ctx.scratch) / 'train'}", "run.progress=false",
                 "run.tensorboard=false", f"run.channels_last={str(cuda).lower()}", "val.hr=null"]
    if ctx.dry_run:
        overrides += ["generator.nf=8", "generator.nb=1", "generator.gc=8", "discriminator.ndf=8", "data.batch=2",
                      "data.patch=32", "loss.perceptual_weight=0"]
    config = api.load_config(ROOT / "configs" / "realsr_dped.yaml", overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch

        trainer = api.Trainer(config, api.DistContext(device=torch.device(ctx.device)))
    batch = next(trainer.batches())
    repeats = 1 if ctx.dry_run else 10
    step = _median_seconds(lambda: trainer.train_step(batch), ctx.device, repeats)
    degrade = _median_seconds(lambda: trainer.degrade(batch), ctx.device, 3 if ctx.dry_run else 10)
    return dict(config="tiny (dry run)" if ctx.dry_run else "configs/realsr_dped.yaml (nb 23, batch 16, HR 128)",
                step_ms=1e3 * step, degrade_ms=1e3 * degrade, degrade_share=degrade / step)


STAGES = [("build", stage_build), ("cuda_tests", stage_cuda_tests), ("ops", stage_ops),
          ("kernelgan", stage_kernelgan), ("upscaler", stage_upscaler), ("tensorrt", stage_tensorrt),
          ("train_step", stage_train_step)]


# --- driver ---------------------------------------------------------------------------------------


def _build_for_this_gpu() -> tuple[list[str], dict | None, str]:
    """Builds the extension for the visible GPU's architecture only (before anything imports it)."""
    import torch

    if not torch.cuda.is_available():
        return [], None, "no GPU visible"
    major, minor = torch.cuda.get_device_capability(0)
    env = {**os.environ, "TORCH_CUDA_ARCH_LIST": f"{major}.{minor}", "REALSR_FAST_CUDA": "1",
           "MAX_JOBS": str(os.cpu_count() or 4)}
    command = [sys.executable, "setup.py", "build_ext", "--inplace"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=360, check=False)
    if result.returncode != 0:
        return command, None, f"build failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return command, dict(arch=f"sm_{major}{minor}", build_s=time.perf_counter() - start), ""


def _markdown(report: dict) -> str:
    lines = [f"# gpu_check ({'dry run, CPU' if report['dry_run'] else report['device_name']})", "",
             f"{report['date']}, torch {report['torch']}, {report['total_s']:.0f} s in all", "",
             "| stage | status | result |", "|---|---|---|"]
    for name, stage in report["stages"].items():
        detail = stage.get("reason") or stage.get("error", "").splitlines()[0:1] or ""
        if stage["status"] == OK:
            detail = json.dumps(stage["result"], default=str)
        elif isinstance(detail, list):
            detail = detail[0] if detail else ""
        lines.append(f"| {name} | {stage['status']} ({stage['seconds']:.1f} s) | {str(detail).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(dry_run: bool, out: Path, build: bool = True, only: list[str] | None = None) -> dict:
    """Runs every stage (or the build and those in `only`); writes gpu_check.json and gpu_check.md into
    `out`; returns the report."""
    import torch

    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA GPU is visible; run with --dry-run to exercise it on the CPU")
    start = time.perf_counter()
    command, build_result, build_error = ([], None, "") if dry_run or not build else _build_for_this_gpu()
    package = use_package()  # after the build, which compiles into this checkout
    print(f"gpu_check: checking realsr_fast from {package}", file=sys.stderr, flush=True)
    arch = "<major.minor of the GPU>"
    ctx = argparse.Namespace(dry_run=dry_run, device="cpu" if dry_run else "cuda", build_result=build_result, package=package,
                             build_command=f"TORCH_CUDA_ARCH_LIST={arch} REALSR_FAST_CUDA=1 python setup.py build_ext --inplace")
    stages = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        ctx.scratch = scratch
        for name, stage in STAGES:
            if only and name not in only and name != "build":
                continue
            print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
            began = time.perf_counter()
            try:
                if name == "build" and build_error:
                    raise RuntimeError(build_error)
                stages[name] = dict(status=OK, result=stage(ctx))
            except Skip as why:
                stages[name] = dict(status=SKIPPED, reason=str(why))
            except Exception as exc:  # noqa: BLE001 - a failed stage is reported, the others still run
                stages[name] = dict(status=FAILED, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}")
            stages[name]["seconds"] = time.perf_counter() - began
            print(f"gpu_check: {name} {stages[name]['status']} in {stages[name]['seconds']:.1f} s", file=sys.stderr, flush=True)
            # Written after every stage, so a run stopped by a time limit still leaves its numbers.
            report = dict(dry_run=dry_run, date=time.strftime("%Y-%m-%d %H:%M:%S"), torch=torch.__version__,
                          device_name="CPU" if dry_run else torch.cuda.get_device_name(0), package=str(package),
                          build_command=" ".join(command) or ctx.build_command, stages=stages,
                          total_s=time.perf_counter() - start)
            _write_report(out, report)
    return report


def _write_report(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_atomically(out / "gpu_check.json", json.dumps(report, indent=2, default=str) + "\n")
    _write_atomically(out / "gpu_check.md", _markdown(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU only, tiny sizes, every stage through its CPU fallback")
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json / .md (default: benchmarks/results/)")
    parser.add_argument("--no-build", action="store_true", help="use the extension as built")
    parser.add_argument("--only", metavar="STAGE", action="append", choices=[name for name, _ in STAGES],
                        help="run this stage (repeatable; the build stage always runs), e.g. --only ops after a kernel change")
    args = parser.parse_args(argv)
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpu_check_out_")) if args.dry_run else ROOT / "benchmarks" / "results")
    report = run(args.dry_run, out, build=not args.no_build, only=args.only)
    print((out / "gpu_check.md").read_text())
    print(f"gpu_check: wrote {out / 'gpu_check.json'}")
    return 1 if any(s["status"] == FAILED for s in report["stages"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
