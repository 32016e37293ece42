"""Reading an offline dataset (written by `realsr dataset`, `data.paired`): its `(HR, LR)` files
and aligned random crops of them, as Real-SR's LQGT dataset takes them (docs/METHOD.md §7).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from realsr_fast.batch import to_rgb8
from realsr_fast.data.crops import augmented_chw
from realsr_fast.errors import RealSRError
from realsr_fast.io import list_images, read_image


def paired_files(folder: str | os.PathLike, scale: int) -> list[tuple[Path, Path]]:
    """The `(HR, LR)` files of an offline dataset (`realsr dataset`), sorted by stem.

    Raises:
        RealSRError: when `folder` lacks `HR/` or `LR/`, holds no images, has a stem on one side
            only, or an LR whose size is not exactly its HR's divided by `scale`.
    """
    folder = Path(folder)
    missing = [name for name in ("HR", "LR") if not (folder / name).is_dir()]
    if missing:
        raise RealSRError(f"{folder}: not an offline dataset (no {' or '.join(missing)} folder); "
                          f"make one with `realsr dataset HR_IMAGES -o {folder}`")
    hr, lr = ({path.stem: path for path in list_images([folder / name])} for name in ("HR", "LR"))
    unpaired = sorted(set(hr) ^ set(lr))
    if unpaired:
        raise RealSRError(f"{folder}: {len(unpaired)} image(s) in only one of HR/ and LR/ (e.g. {unpaired[0]!r}); "
                          "every HR/<stem> needs an LR/<stem>")
    if not hr:
        raise RealSRError(f"{folder}: HR/ and LR/ hold no images")
    pairs = []
    for stem in sorted(hr):
        (hr_w, hr_h), (lr_w, lr_h) = _image_size(hr[stem]), _image_size(lr[stem])
        if (hr_w, hr_h) != (lr_w * scale, lr_h * scale):
            raise RealSRError(f"{lr[stem]} is {lr_w}x{lr_h} but its HR is {hr_w}x{hr_h}: the LR must be exactly "
                              f"1/{scale} of the HR (generator.scale={scale}); was the dataset made at another scale?")
        pairs.append((hr[stem], lr[stem]))
    return pairs


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as exc:  # Pillow raises many types for bad files
        raise RealSRError(f"{path}: unreadable image ({exc})") from None


class PairedCropDataset(Dataset):
    """Aligned random crops of `(HR, LR)` pairs: `(hr, lr)`, `(3, P, P)` and `(3, P/s, P/s)` uint8.

    The LR crop's top-left `(y, x)` is drawn uniformly; the HR crop starts at `(s y, s x)` (Real-SR's
    LQGT dataset). With `augment`, the same horizontal flip, vertical flip and transpose (each with
    probability 1/2) go to both. Pairs whose LR is smaller than `P/s` are skipped with a warning.

    Args:
        pairs: `(HR file, LR file)` from :func:`paired_files`.
        patch: HR crop side P (a multiple of `scale`).
        scale: s.
        cache: decode every pair once, here.
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], patch: int, scale: int, augment: bool = True,
                 cache: bool = True) -> None:
        self.scale, self.lr_patch, self.augment = scale, patch // scale, augment
        small = [pair for pair in pairs if min(_image_size(pair[1])) < self.lr_patch]
        self.pairs = [pair for pair in pairs if pair not in small]
        if small:
            warnings.warn(f"{len(small)} pair(s) skipped (LR smaller than the {self.lr_patch}-px LR patch): "
                          + ", ".join(str(lr) for _, lr in small), stacklevel=2)
        if not self.pairs:
            raise RealSRError(f"no pair whose LR holds a {self.lr_patch}x{self.lr_patch} patch (data.patch={patch})")
        self.images = [self._read(index) for index in range(len(self.pairs))] if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        hr_path, lr_path = self.pairs[index]
        hr, lr = to_rgb8(read_image(hr_path)), to_rgb8(read_image(lr_path))
        if hr.shape[:2] != (lr.shape[0] * self.scale, lr.shape[1] * self.scale):
            raise RealSRError(f"{lr_path} decodes to {lr.shape[1]}x{lr.shape[0]} but {hr_path} to "
                              f"{hr.shape[1]}x{hr.shape[0]}: the LR must be exactly 1/{self.scale} of the HR")
        return hr, lr

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        hr, lr = self.images[index] if self.images is not None else self._read(index)
        p, s = self.lr_patch, self.scale
        top = int(torch.randint(lr.shape[0] - p + 1, ()))
        left = int(torch.randint(lr.shape[1] - p + 1, ()))
        crops = [hr[s * top:s * (top + p), s * left:s * (left + p)], lr[top:top + p, left:left + p]]
        hr_crop, lr_crop = augmented_chw(crops, self.augment)
        return hr_crop, lr_crop
