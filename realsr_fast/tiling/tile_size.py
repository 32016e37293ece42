"""Choosing the tile size from the memory at hand.

RRDBNet's peak memory is set by its HR-resolution layers: a few (scale*h, scale*w, nf)
activations alive at once; we plan with 4 * scale^2 * nf * itemsize bytes per LR pixel, a little
over the measured peak (benchmarks/README.md, "Tile memory").
"""
from __future__ import annotations

import math
import os

import torch

#: The smallest tile chosen (or retried after running out of memory).
MIN_TILE = 32
#: Fraction of the memory available now that one tile may use. There is no fixed cap on the
#: CPU: every tile recomputes `pad` pixels of context on each side, so splitting an image that
#: fits costs time (a 512x512 photo cut into 4 tiles ran 1.22x slower than whole on ncnn,
#: benchmarks/README.md, "Upscale by size").
MEMORY_FRACTION = {"cpu": 0.25, "cuda": 0.6}


def bytes_per_pixel(nf: int, scale: int, itemsize: int) -> int:
    """Planned peak memory of RRDBNet per LR input pixel (and per batch item)."""
    return 4 * scale * scale * nf * itemsize


def available_memory(device: torch.device) -> int:
    """Free bytes on the device: CUDA's free memory, or the OS's MemAvailable on the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def auto_tile(batch: int, height: int, width: int, pad: int, device: torch.device,
              itemsize: int, nf: int, scale: int) -> int | None:
    """The tile side for a (batch, 3, height, width) input, or None when the whole image fits.

    The tile (with its padding) is the largest square that fits the memory budget, a fraction
    of the available memory; never below MIN_TILE.
    """
    budget = available_memory(device) * MEMORY_FRACTION[device.type]
    pixels = budget / (batch * bytes_per_pixel(nf, scale, itemsize))
    if height * width <= pixels:
        return None
    return max(int(math.sqrt(pixels)) - 2 * pad, MIN_TILE)
