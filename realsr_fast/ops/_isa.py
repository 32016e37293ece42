"""Which instruction-set clone the CPU ops' hot loops run (`cpu_isa`), and a switch for a block
(`forced_cpu_isa`)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

import realsr_fast.ops._library  # noqa: F401  (loads the compiled library, which defines the ops)
from realsr_fast.errors import RealSRError


def cpu_isa() -> str:
    """The instruction set the CPU ops' hot loops run: ``baseline``, ``avx2`` or ``avx512``.

    The best the CPU supports unless the environment variable ``REALSR_FAST_ISA`` (read when the
    library loads) names another. The clones compile one source, but the AVX2 and AVX-512 ones
    fuse multiply-adds (FMA contraction: one rounding instead of two), so their results agree with
    the baseline's to within floating-point rounding (the op's forward error bound), not bit for
    bit; uint8 ``patch_stats`` (integer sums) and plain sums agree exactly
    (tests/test_isa_clones.py).
    """
    try:
        return torch.ops.realsr_fast.cpu_isa()
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


@contextlib.contextmanager
def forced_cpu_isa(isa: str) -> Iterator[None]:
    """Runs the CPU ops' ``isa`` clone inside the block (tests and benchmarks compare clones; they
    agree to within floating-point rounding, see :func:`cpu_isa`).

    Raises:
        RealSRError: for an unknown name or one this CPU lacks.
    """
    try:
        previous = torch.ops.realsr_fast.set_cpu_isa(isa)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None
    try:
        yield
    finally:
        torch.ops.realsr_fast.set_cpu_isa(previous)
