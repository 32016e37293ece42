"""JPEG input: the camera's quality from its quantisation tables, and JPEG as a degradation step.

A JPEG file carries the quantisation tables its encoder used (Pillow: `Image.quantization`, natural
order). Encoders built on the IJG library (libjpeg, Pillow, most cameras' software) scale the standard
tables of the JPEG specification (ITU-T T.81, Annex K) by quality q: factor 5000 / q below 50 and
200 - 2 q from 50, each entry floor((base * factor + 50) / 100) clipped to [1, 255]. The quality of a
file is the q whose scaled tables are nearest (least squares over both tables) to the file's.

`compress` is the training step of the `kernel+noise+jpeg` recipe: torchvision's libjpeg encoder
and decoder on each image of an LR batch, at its own quality, on CPU or CUDA tensors.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from realsr_fast.errors import RealSRError

LUMINANCE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]])
"""The standard luminance table (T.81 Annex K, Table K.1), natural order."""
CHROMINANCE = np.array([[17, 18, 24, 47, 99, 99, 99, 99], [18, 21, 26, 66, 99, 99, 99, 99],
                        [24, 26, 56, 99, 99, 99, 99, 99], [47, 66, 99, 99, 99, 99, 99, 99]] + [[99] * 8] * 4)
"""The standard chrominance table (Table K.2)."""
SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


def scaled_table(base: np.ndarray, quality: int) -> np.ndarray:
    """IJG's `jpeg_quality_scaling` of a table (baseline: entries clipped to [1, 255])."""
    if not 1 <= quality <= 100:
        raise RealSRError(f"JPEG quality must be in [1, 100], got {quality}")
    factor = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * factor + 50) // 100, 1, 255)


def quality_of_tables(tables: dict[int, Iterable[int]]) -> float:
    """The IJG quality (1-100) whose standard tables are nearest to `tables` (Pillow's `quantization`:
    table index -> 64 entries, natural order; 0 luminance, 1 chrominance when present)."""
    if 0 not in tables:
        raise RealSRError("a JPEG without a luminance quantisation table")
    observed = [np.asarray(list(tables[i]), dtype=np.float64).reshape(8, 8) for i in (0, 1) if i in tables]
    bases = (LUMINANCE, CHROMINANCE)[:len(observed)]
    errors = [sum(float(np.square(scaled_table(b, q) - o).sum()) for b, o in zip(bases, observed)) for q in range(1, 101)]
    return float(1 + int(np.argmin(errors)))


def read_tables(path: str | Path) -> dict[int, list[int]] | None:
    """A JPEG file's quantisation tables, None for any other image."""
    from PIL import Image

    with Image.open(path) as image:
        if image.format != "JPEG":
            return None
        return {k: list(v) for k, v in image.quantization.items()}


def luminance_table(path: str | Path) -> np.ndarray | None:
    """`(8, 8)` luminance quantisation steps (grey levels) of a JPEG file, None for other images."""
    tables = read_tables(path)
    return None if tables is None else np.asarray(tables[0], dtype=np.float64).reshape(8, 8)


def jpeg_quality_of_folder(photos: Iterable[str | Path]) -> float | None:
    """The median IJG quality of the JPEG files among `photos`, None when fewer than half are JPEG
    (then a JPEG step would not be what the camera did to most of them)."""
    photos = list(photos)
    qualities = []
    for path in photos:
        tables = read_tables(path) if Path(path).suffix.lower() in SUFFIXES else None
        if tables is not None:
            qualities.append(quality_of_tables(tables))
    if not qualities or 2 * len(qualities) < len(photos):
        return None
    return float(np.median(qualities))


def compress(batch, qualities):
    """JPEG-encode and decode each image of `batch` `(N, 3, H, W)` float in [0, 1] at `qualities` `(N,)`
    (ints in [1, 100]), on the batch's device (torchvision's libjpeg, nvJPEG on CUDA); float out, same dtype.
    """
    import warnings

    import torch

    with warnings.catch_warnings():  # torchvision 0.29 marks its codecs deprecated (for torchcodec); they work
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg, encode_jpeg

    images = (batch.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    out = []
    for image, quality in zip(images, [int(q) for q in qualities]):
        encoded = encode_jpeg(image.contiguous(), quality=quality).cpu()  # the decoder reads bytes on the CPU
        out.append(decode_jpeg(encoded, device=batch.device).to(batch.device))
    return torch.stack(out).to(batch.dtype) / 255
