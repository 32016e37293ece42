"""Tiling, independent of the backend that runs the network: the tile grid with its context pad,
the out-of-memory retry, and the automatic tile size. This file stays free of torch so the CLI can
show its defaults quickly."""
from __future__ import annotations

#: LR pixels of context around each tile: enough that tile seams stay within a few grey levels of
#: the whole image's output (more than the ncnn port's 10); chosen from the seam measurements in
#: benchmarks/README.md, "Measurements behind the defaults", "Tile context".
DEFAULT_TILE_PAD = 24
