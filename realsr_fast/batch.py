"""Shared pieces of the data verbs (cleanup, noise, dataset): source folders, RGB photos, reports.

- :func:`source_images`: the images of a source folder, or one clear error when there are none.
- :func:`refuse_output_in_sources`: an output folder may not be a source folder.
- :func:`to_rgb8` / :func:`to_rgb_float`: any image :func:`realsr_fast.io.read_image` returns
  (grey, grey+alpha, RGB, RGBA; 8 or 16 bits) as RGB, the form all training data takes.
- :class:`BatchReport`: what a batch wrote, skipped and failed; batch jobs keep going past a bad
  file, report it and exit non-zero at the end.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.io import image_to_tensor, list_images


def source_images(folder: str | os.PathLike, what: str) -> list[Path]:
    """Sorted image files directly inside `folder` (hidden names skipped).

    `what` names the folder's role in messages ("photo", "HR image"). Raises RealSRError when the
    folder is missing, not a folder, or holds no image, or when two images share a file stem
    (their outputs, named by stem, would collide).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RealSRError(f"{folder}: no such folder (expected a folder of {what}s)")
    images = list_images([folder])
    if not images:
        raise RealSRError(f"{folder}: no {what}s found (png, jpg, jpeg, webp, tif, tiff, bmp)")
    by_stem: dict[str, Path] = {}
    for path in images:
        if path.stem in by_stem:
            raise RealSRError(
                f"{by_stem[path.stem].name} and {path.name} in {folder} share the name {path.stem!r}; "
                "their outputs would collide, rename one of them"
            )
        by_stem[path.stem] = path
    return images


def refuse_output_in_sources(output: str | os.PathLike, sources: Sequence[str | os.PathLike]) -> None:
    """Raise RealSRError when `output` is one of the `sources` folders (inputs are never written)."""
    target = Path(output).resolve()
    for source in sources:
        if Path(source).resolve() == target:
            raise RealSRError(f"the output folder {output} is a source folder; choose another (-o)")


def to_rgb_float(image: np.ndarray) -> torch.Tensor:
    """`(H, W, C)` uint8/uint16 image -> `(1, 3, H, W)` float32 RGB in [0, 1].

    Grey is repeated into R, G and B; alpha is dropped (training data are opaque photos).
    """
    x = image_to_tensor(image)
    if x.shape[1] in (1, 2):
        return x[:, :1].expand(-1, 3, -1, -1).contiguous()
    return x[:, :3].contiguous()


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """`(H, W, C)` uint8/uint16 image -> writable `(H, W, 3)` uint8 RGB (16 bits rounded to 8; grey
    repeated, alpha dropped). A writable 8-bit RGB image is returned without a copy."""
    if not image.flags.writeable:  # arrays Pillow hands out are read-only; torch.from_numpy warns on them
        image = image.copy()
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) * (255 / 65535)).astype(np.uint8)
    channels = image.shape[2]
    if channels == 3:
        return image
    if channels in (1, 2):
        return np.repeat(image[..., :1], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


@dataclass
class BatchReport:
    """What a batch job did, per input file: done (written), skipped (output existed), failed."""

    verb: str
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def fail(self, path: Path, error: Exception | str) -> None:
        """Record a failed input; the message is prefixed with the file's name unless it has it."""
        message = str(error)
        if not message.startswith(str(path)):
            message = f"{path}: {message}"
        self.failed.append((path, message))

    def summary(self, details: str = "") -> str:
        """One line of counts (and `details`), then one line per failure."""
        line = f"{len(self.done)} {_plural(len(self.done), 'image')} {self.verb}{details}"
        if self.skipped:
            line += f", {len(self.skipped)} skipped (outputs exist; --overwrite redoes them)"
        if not self.failed:
            return line
        failures = "".join(f"\n  {message}" for _, message in self.failed)
        return f"{line}, {len(self.failed)} failed:{failures}"


def _plural(count: int, noun: str) -> str:
    return noun if count == 1 else noun + "s"
