"""The noise bank: mined noise patches from a folder, stacked into one `(N, 3, P, P)` uint8 tensor.

A folder written by `realsr noise` has a `manifest.json`; only the patches it lists are loaded
(files left over from an earlier run with other thresholds are ignored). A folder without one
(e.g. Real-SR's `collect_noise.py` output) contributes every image in it. All patches must have
the same size; grey patches are repeated into RGB.

Example:
    >>> bank = load_noise_bank("noise/")
    >>> bank.patches.shape
    torch.Size([412, 3, 256, 256])
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from realsr_fast.batch import to_rgb8
from realsr_fast.errors import RealSRError
from realsr_fast.io import list_images, read_image

#: The file in a noise folder that lists its patches (written by `realsr noise`).
MANIFEST_NAME = "manifest.json"


@dataclass
class NoiseBank:
    """`patches`: `(N, 3, P, P)` uint8 RGB noise patches; `files[i]` is where patch i came from."""

    patches: torch.Tensor
    files: list[Path]


def noise_files(folder: str | os.PathLike) -> list[Path]:
    """The patch files of a noise folder: those its manifest lists, else all its images.

    Raises:
        RealSRError: when the folder is missing, holds no patch, or its manifest names a missing file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RealSRError(f"{folder}: no such noise folder; make one with `realsr noise PHOTOS -o {folder}`")
    manifest = folder / MANIFEST_NAME
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text(encoding="utf-8"))["patches"]
            files = [folder / entry["file"] for entry in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise RealSRError(f"{manifest}: not a noise manifest ({exc}); delete it to use every image in the folder") from None
        missing = [path.name for path in files if not path.is_file()]
        if missing:
            raise RealSRError(f"{manifest} lists {len(missing)} missing patch files (e.g. {missing[0]}); "
                              "re-run `realsr noise` or delete the manifest")
    else:
        files = list_images([folder])
    if not files:
        raise RealSRError(
            f"{folder}: no noise patches; `realsr noise` kept none (its output names the thresholds "
            "that came closest: raise --max-var or lower --min-mean)"
        )
    return files


def load_noise_bank(folder: str | os.PathLike) -> NoiseBank:
    """Read every patch of a noise folder (see :func:`noise_files`) into one uint8 tensor.

    Raises:
        RealSRError: for a missing or empty folder, an unreadable patch, or patches of several sizes.
    """
    files = noise_files(folder)
    patches = [to_rgb8(read_image(path)) for path in files]
    sizes = Counter(patch.shape[:2] for patch in patches)
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w}: {count}" for (h, w), count in sizes.most_common())
        raise RealSRError(f"{folder}: noise patches of several sizes ({listed}); keep one size")
    stacked = torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).contiguous()
    return NoiseBank(stacked, files)
