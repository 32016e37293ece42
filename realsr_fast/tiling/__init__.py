"""Tiling, independent of the backend that runs the network: the tile grid with its context pad,
the out-of-memory retry, and the automatic tile size."""
