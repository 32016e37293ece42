"""The CPU ops' instruction-set clones (issue 13, item 10): the same op in its baseline x86-64 clone
and in the best clone this CPU supports, timed in the same run (ops.forced_cpu_isa switches them).

    python -m pytest benchmarks/bench_isa.py --benchmark-json benchmarks/results/isa_cpu.json
    python benchmarks/ratios.py benchmarks/results/isa_cpu.json

Cases: patch_stats on a 1356 x 2040 photo (patch 256, stride 16), uint8 (exact int64 sums) and
float32 (double sums); degrade on a training batch (16 x 3 x 128^2 uint8, 33x33 kernels, x4). The
`_ours` row is the best clone; a ratio near 1 would mean the clone is not vectorised.
"""
from __future__ import annotations

import pytest
import torch

from realsr_fast import RealSRError, ops

ROUNDS = dict(rounds=5, iterations=1, warmup_rounds=1)


def _best_isa() -> str:
    for isa in ("avx512", "avx2"):
        try:
            with ops.forced_cpu_isa(isa):
                return isa
        except RealSRError:
            pass
    pytest.skip("this CPU has no SIMD clone beyond the baseline")


@pytest.fixture(scope="module")
def photo():
    g = torch.Generator().manual_seed(22)
    return torch.randint(0, 256, (1, 3, 1356, 2040), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def training_batch():
    g = torch.Generator().manual_seed(23)
    kernels = torch.rand(16, 33, 33, generator=g)
    return (torch.randint(0, 256, (16, 3, 128, 128), dtype=torch.uint8, generator=g),
            kernels / kernels.sum(dim=(1, 2), keepdim=True))


def _run(benchmark, isa: str, fn, *args):
    with ops.forced_cpu_isa(isa):
        benchmark.extra_info["isa"] = ops.cpu_isa()
        benchmark.pedantic(fn, args=args, **ROUNDS)


@pytest.mark.benchmark(group="patch_stats uint8 1356x2040 p256 s16")
def test_patch_stats_uint8_ours(benchmark, photo):
    _run(benchmark, _best_isa(), ops.patch_stats, photo, 256, 16)


@pytest.mark.benchmark(group="patch_stats uint8 1356x2040 p256 s16")
def test_patch_stats_uint8_baseline(benchmark, photo):
    _run(benchmark, "baseline", ops.patch_stats, photo, 256, 16)


@pytest.mark.benchmark(group="patch_stats float32 1356x2040 p256 s16")
def test_patch_stats_float_ours(benchmark, photo):
    _run(benchmark, _best_isa(), ops.patch_stats, photo.float() / 255, 256, 16)


@pytest.mark.benchmark(group="patch_stats float32 1356x2040 p256 s16")
def test_patch_stats_float_baseline(benchmark, photo):
    _run(benchmark, "baseline", ops.patch_stats, photo.float() / 255, 256, 16)


@pytest.mark.benchmark(group="degrade 16x3x128^2 k33 x4")
def test_degrade_ours(benchmark, training_batch):
    _run(benchmark, _best_isa(), ops.degrade, *training_batch, 4)


@pytest.mark.benchmark(group="degrade 16x3x128^2 k33 x4")
def test_degrade_baseline(benchmark, training_batch):
    _run(benchmark, "baseline", ops.degrade, *training_batch, 4)
