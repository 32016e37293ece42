"""The tiler's out-of-memory retry: whatever form the error takes (torch's OutOfMemoryError, or
cuDNN's / cuBLAS's / the CUDA runtime's RuntimeError), tiles are halved; other errors pass."""
from __future__ import annotations

import logging

import pytest
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.tiling.tiler import is_out_of_memory, upscale_tiled_retrying

CPU = torch.device("cpu")


def nearest_x2(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, 2h, 2w): each pixel repeated, so tiles join exactly."""
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 140737488355328 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError("Unable to allocate 8.00 GiB for an array"),
])
def test_out_of_memory_in_any_form_halves_the_tiles(error, caplog):
    x = torch.rand(2, 3, 40, 36, generator=torch.Generator().manual_seed(5))
    sides = []

    def small_tiles_only(t: torch.Tensor) -> torch.Tensor:
        sides.append(max(t.shape[2:]))
        if max(t.shape[2:]) > 36:
            raise error
        return nearest_x2(t)

    with caplog.at_level(logging.WARNING):
        got = upscale_tiled_retrying(x, small_tiles_only, 2, None, 4, CPU)
    torch.testing.assert_close(got, nearest_x2(x), rtol=0, atol=0)
    assert sides[0] == 40 and "retrying with 32 px" in caplog.text


def test_other_runtime_errors_are_not_retried():
    calls = []

    def broken(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.shape)
        raise RuntimeError("Given groups=1, weight of size [64, 3, 3, 3], expected 3 channels")

    with pytest.raises(RuntimeError, match="expected 3 channels"):
        upscale_tiled_retrying(torch.rand(1, 3, 64, 64), broken, 2, None, 4, CPU)
    assert len(calls) == 1
    assert not is_out_of_memory(ValueError("out of memory"))


def test_out_of_memory_at_the_smallest_tile_is_a_realsr_error():
    def always(t: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED")

    with pytest.raises(RealSRError, match="out of memory"):
        upscale_tiled_retrying(torch.rand(1, 3, 64, 64), always, 2, 64, 4, CPU)
