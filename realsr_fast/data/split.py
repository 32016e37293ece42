"""The held-out split: whole photos go to validation (and test), never crops of a training photo."""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from realsr_fast.errors import RealSRError
from realsr_fast.io import list_images


def split_names(names: Sequence[str], held_out: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split photo stems into (train, validation), each sorted.

    The order is a hash of (seed, stem), so a photo's side does not change when others are added
    or removed; at least one photo goes to each side.

    Raises:
        RealSRError: fewer than two photos, or `held_out` outside (0, 1).
    """
    if not 0 < held_out < 1:
        raise RealSRError(f"--held-out is the fraction of photos kept for validation, in (0, 1); got {held_out}")
    if len(set(names)) < 2:
        raise RealSRError(f"adapting needs at least 2 photos (one to train on, one held out), got {len(set(names))}")
    ranked = sorted(set(names), key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())
    count = min(max(1, round(held_out * len(ranked))), len(ranked) - 1)
    return sorted(ranked[count:]), sorted(ranked[:count])


@dataclass(frozen=True)
class Roles:
    """The three roles of a camera's photos (sorted stems): `train` is trained on, `val` picks the
    checkpoint and the starting model, `test` is only scored (empty with fewer than 3 photos)."""

    train: list[str]
    val: list[str]
    test: list[str]


def split_roles(names: Sequence[str], held_out: float, seed: int = 0) -> Roles:
    """Split photo stems into training, validation and test photos by a hash of (seed, stem).

    Ranked by the hash, the first `round(held_out * n)` stems (at least one) go to test, the next
    as many to validation, the rest to training; every role keeps at least one photo when there are
    3 or more. With 2 photos there is no test photo (one trains, one validates); a photo's role does
    not depend on the other photos' names, only on how many there are.

    Raises:
        RealSRError: fewer than two photos, or `held_out` outside (0, 1).
    """
    if not 0 < held_out < 1:
        raise RealSRError(f"--held-out is the fraction of photos kept for validation and for test, in (0, 1); got {held_out}")
    unique = set(names)
    if len(unique) < 2:
        raise RealSRError(f"adapting needs at least 2 photos (one to train on, one to choose the checkpoint; "
                          f"3 or more for a test score), got {len(unique)}")
    ranked = sorted(unique, key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())
    if len(ranked) == 2:
        return Roles(ranked[1:], ranked[:1], [])
    count = max(1, round(held_out * len(ranked)))
    count = min(count, (len(ranked) - 1) // 2)
    return Roles(sorted(ranked[2 * count:]), sorted(ranked[count:2 * count]), sorted(ranked[:count]))


def materialise(source: Path, names: Sequence[str], target: Path) -> None:
    """Copy the image `source/<name>.<suffix>` of each name into `target/` (exactly those files).

    The suffix is whatever the source has (png, jpg, tif, webp, ...: the clean-up writes PNGs, but
    `realsr adapt --already-clean` takes the photos as they are) and the copy keeps it; images of
    `target/` that are not wanted (an earlier split's, or the same name with another suffix) are removed.

    Raises:
        RealSRError: a name has no image in `source`.
    """
    available = {path.stem: path for path in list_images([source])}
    missing = [name for name in names if name not in available]
    if missing:
        raise RealSRError(f"{source}: no image named {', '.join(repr(n) for n in sorted(missing))} "
                          f"(png, jpg, jpeg, webp, tif, tiff, bmp) to copy into {target}")
    target.mkdir(parents=True, exist_ok=True)
    wanted = {available[name].name for name in names}
    for stale in list_images([target]):
        if stale.name not in wanted:
            stale.unlink()
    for name in sorted(wanted):
        if not (target / name).exists():
            shutil.copy2(source / name, target / name)
