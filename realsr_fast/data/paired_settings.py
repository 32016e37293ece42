"""`PairedSettings`: how `realsr dataset` makes the LR of each HR image, apart from the writer.

Light on purpose: `realsr dataset --help` reads the defaults from here without importing torch;
`data.paired` builds the dataset from it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class PairedSettings:
    """The offline recipe (`data.recipes.OFFLINE_RECIPES`) and what it reads: the kernel folder (the
    `kernel` recipe; a `realsr kernels` output), the noise folder linked beside the pairs for training
    (None: none), the SR scale and the seed of the per-image kernel draw."""

    recipe: str = "kernel"
    kernels: str | os.PathLike | None = None
    noise: str | os.PathLike | None = None
    scale: int = 4
    seed: int = 0
