"""Which torch device a user's `--device` choice means, what the CPU computes natively, and IEEE fp32."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from realsr_fast.errors import RealSRError


def torchrun_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them (RANK, WORLD_SIZE, LOCAL_RANK);
    (0, 1, 0) outside torchrun."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(device: str) -> torch.device:
    """`auto` -> the GPU (this rank's under torchrun) when CUDA is available, else the CPU; `cuda`,
    `cuda:N` and `cpu` must name an available device (RealSRError otherwise)."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        # Under torchrun each process takes its own GPU.
        return torch.device("cuda", torchrun_ranks()[2] % torch.cuda.device_count())
    if device == "auto":
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise RealSRError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise RealSRError(f"device {device!r} is not supported: use auto, cpu, cuda or cuda:N")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RealSRError(f"device {device!r} was asked for but CUDA is not available here; "
                          "use --device cpu")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise RealSRError(f"device {device!r} does not exist: this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    return resolved


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX), as torch's own CPU feature
    detection (cpuinfo) answers it, on any OS; False where torch cannot tell."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def cuda_index(device: torch.device) -> int:
    """The GPU number `device` means: its index, or (plain `cuda`) the current device's, which is
    what torch uses for it. Code that runs CUDA work outside torch (TensorRT) must make this
    device current itself (`torch.cuda.device(index)`), or it runs on device 0."""
    if device.type != "cuda":
        raise RealSRError(f"{device} is not a CUDA device")
    return device.index if device.index is not None else torch.cuda.current_device()


@contextlib.contextmanager
def ieee_fp32() -> Iterator[None]:
    """cuDNN and cuBLAS in IEEE fp32 inside the block (torch lets convolutions use TF32 by default):
    the reference against which reduced-precision paths are scored."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Inside the block, what native code writes to file descriptor 2 is discarded (a library that
    prints its own diagnostics while it is only asked a question). Process-wide: keep the block short."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
