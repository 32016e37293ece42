"""Clean-up: make clean HR images from real photos (docs/METHOD.md §2).

HR = MATLAB bicubic `imresize(photo, 1/factor)` (antialiased; noise and compression artefacts
mostly vanish), clamped to [0, 1], rounded to 8 bits, then cropped at the bottom and right to a
multiple of the SR scale so that the LR made from it later has an exact size.

Example:
    >>> hr = clean_photo(read_image("dped/0001.jpg"), factor=2, multiple=4)   # (H', W', 3) uint8
    >>> report = cleanup_folder("dped/", "dped_hr/")
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from realsr_fast.batch import BatchReport, refuse_output_in_sources, source_images, to_rgb_float
from realsr_fast.data.imresize import imresize
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image, tensor_to_image, write_image


def clean_photo(image: np.ndarray, factor: float = 2, multiple: int = 4) -> np.ndarray:
    """One photo -> its clean HR image.

    Args:
        image: `(H, W, C)` uint8 or uint16 photo (grey, RGB, with or without alpha).
        factor: down-scaling factor of the clean-up (RealSR: 2); the resize gives
            `ceil(H / factor) x ceil(W / factor)` like MATLAB.
        multiple: the HR's height and width are cropped (bottom, right) to a multiple of this,
            the SR scale.

    Returns:
        `(H', W', 3)` uint8 RGB.

    Raises:
        RealSRError: when the result would be smaller than `multiple` pixels.
    """
    if not factor > 0:
        raise RealSRError(f"the clean-up factor must be positive, got {factor}")
    if multiple < 1:
        raise RealSRError(f"the crop multiple must be at least 1, got {multiple}")
    hr = imresize(to_rgb_float(image), 1 / factor)
    height = hr.shape[2] - hr.shape[2] % multiple
    width = hr.shape[3] - hr.shape[3] % multiple
    if height == 0 or width == 0:
        raise RealSRError(
            f"a {image.shape[0]}x{image.shape[1]} photo is too small: after the 1/{factor:g} resize "
            f"it is {hr.shape[2]}x{hr.shape[3]}, less than {multiple} pixels"
        )
    return tensor_to_image(hr[..., :height, :width])


def cleanup_folder(
    source: str | os.PathLike,
    output: str | os.PathLike,
    factor: float = 2,
    multiple: int = 4,
    overwrite: bool = False,
    progress: bool = True,
) -> BatchReport:
    """Clean every photo of `source` into `output/<stem>.png` (see :func:`clean_photo`).

    Existing outputs are skipped unless `overwrite`; unreadable or too-small photos are reported
    in the returned report and the others are still cleaned. `source` is never written.

    Raises:
        RealSRError: when `source` has no images or `output` is `source`.
    """
    photos = source_images(source, "photo")
    refuse_output_in_sources(output, [source])
    output = Path(output)
    report = BatchReport("cleaned")
    for photo in tqdm(photos, desc="clean-up", unit="image", disable=not progress):
        target = output / f"{photo.stem}.png"
        if target.exists() and not overwrite:
            report.skipped.append(photo)
            continue
        try:
            write_image(target, clean_photo(read_image(photo), factor, multiple))
        except RealSRError as exc:
            report.fail(photo, exc)
            continue
        report.done.append(photo)
    return report
