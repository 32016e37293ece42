"""Peak memory of upscaling one tile, as the OS counts it (for test_upscaler.py; not a test module).

    python tests/tile_memory_probe.py MODEL PRECISION SIDE [SIDE ...]

For each SIDE, a fresh random (1, 3, SIDE, SIDE) image is upscaled on the CPU in PRECISION (the
Upscaler's torch backend) as one tile, and the peak resident memory above the resident memory
just before is printed (bytes, one line per side).
The peak is the kernel's VmHWM, reset through /proc/self/clear_refs: it sees every allocation
(torch's, oneDNN's scratch, the allocator's slack), which tracemalloc and torch's own counters
do not. Runs in its own process so that memory freed by earlier work cannot hide a peak.
"""
from __future__ import annotations

import gc
import sys

import torch

from realsr_fast.inference.upscaler import Upscaler


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def tile_peak(up: Upscaler, side: int, seed: int) -> int:
    """Peak resident bytes, above those before, of upscaling a side x side image in one tile."""
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(seed))
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := RSS now
    before = _status("VmRSS:")
    up.upscale_tensor(x)
    return _status("VmHWM:") - before


def main(model: str, precision: str, sides: list[int]) -> None:
    up = Upscaler(model, device="cpu", precision=precision, tile=max(sides))
    up.upscale_tensor(torch.rand(1, 3, 32, 32))  # oneDNN's one-time setup is not a tile's memory
    for seed, side in enumerate(sides):
        print(tile_peak(up, side, seed), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]])
