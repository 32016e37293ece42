"""The C++ ops' per-instruction-set clones (baseline, AVX2, AVX-512): each one the CPU supports runs
the op tests, so a clone other than the best is not dead code. The clone is chosen by the
environment variable REALSR_FAST_ISA when the library loads (checked in a subprocess), or switched
in-process with ops.forced_cpu_isa (used here, which keeps the run short)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from realsr_fast import RealSRError, ops

ROOT = Path(__file__).resolve().parent.parent
ISAS = ["baseline", "avx2", "avx512"]
OP_TESTS = ["tests/test_degrade.py", "tests/test_patch_stats.py", "tests/test_batchnorm_relu.py",
            "tests/test_correlation_grad.py"]


def _supported(isa: str) -> bool:
    try:
        with ops.forced_cpu_isa(isa):
            return True
    except RealSRError:
        return False


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("isa", ISAS)
def test_environment_variable_selects_the_clone(isa):
    if not _supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    result = _python("from realsr_fast import ops; print(ops.cpu_isa())", REALSR_FAST_ISA=isa)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == isa


def test_unknown_or_unsupported_isa_is_a_clear_error():
    result = _python("from realsr_fast import ops; ops.cpu_isa()", REALSR_FAST_ISA="sse9")
    assert result.returncode != 0 and "REALSR_FAST_ISA=sse9 is not an instruction set" in result.stderr
    with pytest.raises(RealSRError, match="not an instruction set"), ops.forced_cpu_isa("neon"):
        pass
    if not _supported("avx512"):
        with pytest.raises(RealSRError, match="supports at most"), ops.forced_cpu_isa("avx512"):
            pass


@pytest.mark.parametrize("isa", ISAS)
def test_clones_give_the_same_results(rng, isa):
    """Every clone against the baseline clone on fresh inputs, all four ops."""
    if not _supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    hr = torch.from_numpy(rng.integers(0, 256, (2, 3, 45, 38), dtype="uint8"))
    kernels = torch.from_numpy(rng.random((2, 13, 13))).float()
    x = torch.from_numpy(rng.standard_normal((6, 50)))
    w, b = torch.from_numpy(rng.random(6)), torch.from_numpy(rng.standard_normal(6))
    xs, gs = torch.from_numpy(rng.standard_normal((3, 2, 31, 27))), torch.from_numpy(rng.standard_normal((3, 2, 9, 7)))

    def run_all():
        return (ops.degrade(hr, kernels, 3), *ops.patch_stats(hr, 9, 4), ops.batchnorm_relu(x, w, b),
                ops.correlation_kernel_grad(xs, gs, 3, 5))

    with ops.forced_cpu_isa("baseline"):
        want = run_all()
    with ops.forced_cpu_isa(isa):
        assert ops.cpu_isa() == isa
        got = run_all()
    for g, w_ in zip(got, want):
        torch.testing.assert_close(g, w_, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("isa", ISAS)
def test_op_tests_pass_under_each_clone(isa):
    """The op test files, in a fresh process that loads the library with REALSR_FAST_ISA=isa."""
    if not _supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not cuda and not slow",
                             *OP_TESTS], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "REALSR_FAST_ISA": isa})
    assert result.returncode == 0, result.stdout[-3000:]
