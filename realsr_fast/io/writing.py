"""Writing `(H, W, C)` uint8/uint16 arrays as image files, atomically, format from the suffix,
with the metadata kept from the input (`io.metadata`)."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from realsr_fast.errors import RealSRError
from realsr_fast.image_formats import DEFAULT_QUALITY
from realsr_fast.io.files import SIXTEEN_BIT_SUFFIXES, atomic_write
from realsr_fast.io.metadata import ImageMetadata, png_with_metadata
from realsr_fast.io.reading import check_image_array, opencv, swap_red_blue

# Pillow format name for each suffix we write, and what each format can hold.
_FORMAT_BY_SUFFIX = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
    ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
}
_ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}
_QUALITY_FORMATS = {"JPEG", "WEBP"}
_SAVE_OPTIONS = {
    # 4:4:4 chroma: subsampling would halve the colour resolution we just quadrupled.
    "JPEG": {"quality": DEFAULT_QUALITY, "subsampling": 0},
    "WEBP": {"quality": DEFAULT_QUALITY},
    "TIFF": {"compression": "tiff_deflate"},
    "PNG": {},
    "BMP": {},
}


def write_image(path: str | os.PathLike, image: np.ndarray, metadata: ImageMetadata | None = None,
                quality: int | None = None) -> None:
    """Write an `(H, W, C)` uint8/uint16 array, format from the suffix, atomically.

    Parent folders are created. 16-bit images need PNG or TIFF; images with alpha need PNG,
    TIFF or WebP; anything else raises RealSRError rather than dropping data. WebP has no grey
    mode, so grey is stored as RGB there. JPEG and WebP are written at `quality` (1-100,
    default `DEFAULT_QUALITY`, 95; other formats are lossless and ignore it).

    `metadata` (see `read_metadata`) is written as the format allows: EXIF, ICC profile, XMP and
    DPI in PNG, JPEG, WebP (no DPI field: the EXIF resolution carries it) and TIFF; BMP keeps
    none. 16-bit colour TIFF (written by OpenCV) keeps none either; 16-bit PNG keeps all. An ICC
    profile for another colour space than the one written (an RGB profile on grey, CMYK) is left out.
    """
    path = Path(path)
    fmt = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if quality is not None and not (isinstance(quality, (int, np.integer)) and 1 <= quality <= 100):
        raise RealSRError(f"--quality must be a whole number from 1 to 100, got {quality}")
    if fmt is None:
        raise RealSRError(
            f"{path}: unknown image suffix {path.suffix!r}; use one of {sorted(_FORMAT_BY_SUFFIX)}"
        )
    check_image_array(image)
    channels = image.shape[2]
    if image.dtype == np.uint16 and path.suffix.lower() not in SIXTEEN_BIT_SUFFIXES:
        raise RealSRError(
            f"{path}: {fmt} stores 8 bits per channel; write a 16-bit image as .png or .tif"
        )
    if channels in (2, 4) and fmt not in _ALPHA_FORMATS:
        raise RealSRError(
            f"{path}: {fmt} cannot store an alpha channel; write it as .png, .tif or .webp"
        )
    metadata = (metadata or ImageMetadata()).fitting(channels, fmt)
    if image.dtype == np.uint16 and channels > 1:
        data = _encode_with_opencv(image, path.suffix.lower())
        if fmt == "PNG":
            data = png_with_metadata(data, metadata)
    else:
        data = None
    options = dict(_SAVE_OPTIONS[fmt])
    if quality is not None and fmt in _QUALITY_FORMATS:
        options["quality"] = int(quality)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as file:
            if data is not None:
                file.write(data)
            else:
                pixels = image[..., 0] if channels == 1 else image
                pil = Image.fromarray(np.ascontiguousarray(pixels))
                try:
                    pil.save(file, format=fmt, **options, **metadata.save_options(fmt))
                except (ValueError, TypeError, KeyError, struct.error) as exc:  # odd metadata, not I/O
                    raise RealSRError(f"{path}: cannot write the input's metadata as {fmt} ({exc}); "
                                      "--strip-metadata writes the image without it") from None
    except OSError as exc:
        raise RealSRError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _encode_with_opencv(image: np.ndarray, suffix: str) -> bytes:
    """Encode 16-bit grey+alpha / RGB / RGBA; OpenCV has no grey+alpha, so that becomes RGBA."""
    cv2 = opencv()
    if image.shape[2] == 2:
        image = image[..., [0, 0, 0, 1]]
    ok, buffer = cv2.imencode(suffix, swap_red_blue(image))
    if not ok:
        raise RealSRError(f"OpenCV could not encode a 16-bit {suffix} image of shape {image.shape}")
    return buffer.tobytes()
