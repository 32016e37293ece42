"""Tiling, independent of the backend that runs the network: the tile grid with its context pad,
the out-of-memory retry, and the automatic tile size. This file stays free of torch so the CLI can
show its defaults quickly."""
from __future__ import annotations

#: LR pixels of context around each tile; 24 leaves seams of at most a few grey levels where the
#: ncnn port's 10 leaves up to 30 (measured in benchmarks/README.md, "Tile context").
DEFAULT_TILE_PAD = 24
