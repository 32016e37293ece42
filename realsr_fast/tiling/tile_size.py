"""Choosing the tile size from the memory at hand.

RRDBNet's peak memory is set by its HR-resolution layers: a few (scale*h, scale*w, nf)
activations alive at once; we plan with 4 * scale^2 * nf * itemsize bytes per LR pixel, a little
over the measured peak (benchmarks/README.md, "Tile memory").
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

#: The smallest tile chosen (or retried after running out of memory).
MIN_TILE = 32
#: Fraction of the memory available now that one tile may use. There is no fixed cap on the
#: CPU: every tile recomputes `pad` pixels of context on each side, so splitting an image that
#: fits costs time (how much, for a photo cut into 4 tiles: benchmarks/README.md, "Upscale by size").
MEMORY_FRACTION = {"cpu": 0.25, "cuda": 0.6}


def bytes_per_pixel(nf: int, scale: int, itemsize: int) -> int:
    """Planned peak memory of RRDBNet per LR input pixel (and per batch item)."""
    return 4 * scale * scale * nf * itemsize


#: Where the kernel shows this process's cgroup (v1 and v2) and the cgroup file systems.
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    """The integer in a cgroup file, or None when absent, unreadable or "max" (no limit)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat(path: Path, key: str) -> int:
    """One field of a cgroup memory.stat file (0 when missing)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _cgroup_paths() -> list[tuple[str, str]]:
    """(controllers, path) of each hierarchy in /proc/self/cgroup; "" controllers is cgroup v2."""
    try:
        lines = PROC_SELF_CGROUP.read_text().splitlines()
    except OSError:
        return []
    entries = [line.split(":", 2) for line in lines]
    return [(controllers, path) for _, controllers, path in (e for e in entries if len(e) == 3)]


def _ancestors(root: Path, path: str) -> list[Path]:
    """The cgroup folder of `path` under `root` and every folder above it up to `root`; only the root
    when the path is not visible there (a container sees its own cgroup as the root)."""
    folder = root / path.lstrip("/")
    if not folder.is_dir():
        return [root]
    folders = [folder]
    while folder != root and root in folder.parents:
        folder = folder.parent
        folders.append(folder)
    return folders


def cgroup_memory_headroom() -> int | None:
    """Bytes this process's cgroups still allow (the tightest limit minus what the cgroup uses, its
    reclaimable page cache not counted), over cgroup v2 and v1; None when no limit applies."""
    headrooms = []
    for controllers, path in _cgroup_paths():
        if controllers == "":
            for folder in _ancestors(CGROUP_ROOT, path):
                limit, used = _read_int(folder / "memory.max"), _read_int(folder / "memory.current")
                if limit is not None and used is not None:
                    headrooms.append(limit - used + _stat(folder / "memory.stat", "inactive_file"))
        elif "memory" in controllers.split(","):
            for folder in _ancestors(CGROUP_ROOT / "memory", path):
                limit, used = _read_int(folder / "memory.limit_in_bytes"), _read_int(folder / "memory.usage_in_bytes")
                # v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages): above any real RAM.
                if limit is not None and used is not None and limit < _physical_memory():
                    headrooms.append(limit - used + _stat(folder / "memory.stat", "total_inactive_file"))
    return max(min(headrooms), 0) if headrooms else None


def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _host_available() -> int:
    """The OS's MemAvailable (Linux), else the free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def available_memory(device: torch.device) -> int:
    """Free bytes on the device: CUDA's free memory; on the CPU the smaller of the host's available
    memory and what the process's cgroup (a container's memory limit) still allows."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    headroom = cgroup_memory_headroom()
    host = _host_available()
    return host if headroom is None else min(host, headroom)


def auto_tile(batch: int, height: int, width: int, pad: int, device: torch.device, pixel_bytes: int) -> int | None:
    """The tile side for a (batch, 3, height, width) input, or None when the whole image fits.

    The tile (with its padding) is the largest square that fits the memory budget, a fraction
    of the available memory; never below MIN_TILE. `pixel_bytes`: the planned memory per LR pixel
    of one batch item, the network's activations (:func:`bytes_per_pixel`) plus what a runner keeps
    beside them (the Winograd trunk's buffers).
    """
    budget = available_memory(device) * MEMORY_FRACTION[device.type]
    pixels = budget / (batch * pixel_bytes)
    if height * width <= pixels:
        return None
    return max(int(math.sqrt(pixels)) - 2 * pad, MIN_TILE)
