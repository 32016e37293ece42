"""What a photo carries besides its pixels (EXIF, ICC profile, XMP, DPI): read from the input
(`read_metadata`), adjusted to the upscaled image (`ImageMetadata.resized`) and written as each
format allows (`ImageMetadata.save_options`, `png_with_metadata`)."""
from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from realsr_fast.io.reading import EXIF_ORIENTATION_TAG, register_heif_for

_XMP_PNG_KEY = "XML:com.adobe.xmp"
_TIFF_XMP_TAG, _TIFF_ICC_TAG = 700, 34675
_EXIF_IFD, _X_RESOLUTION, _Y_RESOLUTION, _RESOLUTION_UNIT = 0x8769, 282, 283, 296
_PIXEL_X_DIMENSION, _PIXEL_Y_DIMENSION = 0xA002, 0xA003
_SUB_IFDS = frozenset({_EXIF_IFD, 0x8825, 0xA005})  # EXIF, GPS, interoperability
# Tags that describe how a TIFF stores its pixels; a TIFF's own IFD is its EXIF, and these must
# not travel to another file (the writer sets its own).
_TIFF_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325,
    330, 338, 339, 513, 514, 530, 531, 532, _TIFF_XMP_TAG, _TIFF_ICC_TAG,
})
_ICC_SPACES = {1: b"GRAY", 2: b"GRAY", 3: b"RGB ", 4: b"RGB "}


@dataclass(frozen=True)
class ImageMetadata:
    """What a photo carries besides its pixels, for the upscaled copy (`read_metadata`).

    `exif`: the EXIF block (Pillow's form: 'Exif\\0\\0' and a TIFF structure), its orientation
    already 1 (`read_image` turns the pixels); `icc_profile`: the ICC colour profile, copied byte
    for byte (a Display-P3 or Adobe RGB photo stays one); `xmp`: the XMP packet; `dpi`: (x, y)
    pixels per inch of the image as shown. All None: nothing to keep.
    """

    exif: bytes | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None

    def resized(self, in_size: tuple[int, int], out_size: tuple[int, int]) -> ImageMetadata:
        """For the image resized from `in_size` to `out_size` (height, width): DPI and the EXIF
        resolution multiplied by each axis' factor (the print size stays), the EXIF pixel size set."""
        fy, fx = out_size[0] / in_size[0], out_size[1] / in_size[1]
        dpi = None if self.dpi is None else (self.dpi[0] * fx, self.dpi[1] * fy)
        exif = None
        if self.exif is not None:
            tags = _load_exif(self.exif)
            for tag, factor in ((_X_RESOLUTION, fx), (_Y_RESOLUTION, fy)):
                if tag in tags:
                    value = float(tags[tag]) * factor
                    if math.isfinite(value) and value > 0:
                        tags[tag] = _rational(value)
                    else:  # a broken resolution (0/0) is dropped rather than written
                        del tags[tag]
            sub = tags.get_ifd(_EXIF_IFD)
            if sub:
                sub[_PIXEL_X_DIMENSION], sub[_PIXEL_Y_DIMENSION] = int(out_size[1]), int(out_size[0])
            exif = tags.tobytes()
        return ImageMetadata(exif, self.icc_profile, self.xmp, dpi)

    def fitting(self, channels: int, fmt: str) -> ImageMetadata:
        """Without an ICC profile whose colour space is not the one written (grey, or RGB for
        colour and for WebP, which stores grey as RGB)."""
        if self.icc_profile is None:
            return self
        space = b"RGB " if fmt == "WEBP" else _ICC_SPACES[channels]
        if self.icc_profile[16:20] == space:
            return self
        return ImageMetadata(self.exif, None, self.xmp, self.dpi)

    def save_options(self, fmt: str) -> dict[str, object]:
        """Pillow `save` keyword arguments that write this metadata in format `fmt`."""
        options: dict[str, object] = {}
        if fmt == "BMP":
            return options
        if self.icc_profile is not None:
            options["icc_profile"] = self.icc_profile
        if self.dpi is not None and fmt != "WEBP":
            options["dpi"] = self.dpi
        if fmt == "TIFF":
            # A TIFF's EXIF is its own IFD: the tags and XMP go there. libtiff, which writes the
            # deflate compression, cannot write sub-IFDs: the EXIF (exposure, date taken) and GPS
            # ones are left out of TIFFs.
            tags = _load_exif(self.exif) if self.exif is not None else Image.Exif()
            for sub_ifd in _SUB_IFDS & set(tags):
                del tags[sub_ifd]
            if self.xmp is not None:
                tags[_TIFF_XMP_TAG] = self.xmp
            if len(tags):
                options["exif"] = tags
            return options
        if self.exif is not None:
            options["exif"] = self.exif
        if self.xmp is not None and fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_itxt(_XMP_PNG_KEY, self.xmp.decode("utf-8", "replace"))
            options["pnginfo"] = info
        elif self.xmp is not None:
            options["xmp"] = self.xmp
        return options


def _load_exif(data: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(data)
    return exif


def _rational(value: float):
    from fractions import Fraction

    from PIL.TiffImagePlugin import IFDRational

    fraction = Fraction(value).limit_denominator(1 << 16)
    return IFDRational(fraction.numerator, fraction.denominator)


def read_metadata(path: str | os.PathLike) -> ImageMetadata:
    """The EXIF, ICC profile, XMP and DPI of an image file, for the image as shown.

    The EXIF orientation becomes 1 (normal) because `read_image` has already turned the pixels,
    and for a quarter turn the x and y resolutions swap. TIFF layout tags are dropped (the TIFF
    IFD is its EXIF). Unreadable metadata is left out rather than failing the image.
    """
    path = Path(path)
    register_heif_for(path)
    try:
        with Image.open(path) as im:
            info = im.info
            exif = im.getexif()
            orientation = exif.get(EXIF_ORIENTATION_TAG, 1)
            icc = info.get("icc_profile") or None
            xmp = info.get("xmp") or info.get(_XMP_PNG_KEY)
            if xmp is None and im.format == "TIFF":
                xmp = im.tag_v2.get(_TIFF_XMP_TAG)
            dpi = info.get("dpi")
            if im.format == "TIFF":
                exif.get_ifd(_EXIF_IFD)
                for tag in _TIFF_LAYOUT_TAGS & set(exif):
                    del exif[tag]
    except Exception:  # read_image reports a broken file; metadata is best effort
        return ImageMetadata()
    transposed = orientation in (5, 6, 7, 8)
    if EXIF_ORIENTATION_TAG in exif:
        exif[EXIF_ORIENTATION_TAG] = 1
    if transposed:
        x, y = exif.get(_X_RESOLUTION), exif.get(_Y_RESOLUTION)
        if x is not None and y is not None:
            exif[_X_RESOLUTION], exif[_Y_RESOLUTION] = y, x
        if dpi is not None:
            dpi = (dpi[1], dpi[0])
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    elif isinstance(xmp, tuple):  # a TIFF BYTE array
        xmp = bytes(xmp)
    exif_bytes = exif.tobytes() if len(exif) else None
    if not dpi and _X_RESOLUTION in exif and _Y_RESOLUTION in exif:  # WebP, HEIC: only the EXIF's
        per_inch = {2: 1.0, 3: 2.54}.get(exif.get(_RESOLUTION_UNIT, 2))
        if per_inch is not None:
            dpi = (float(exif[_X_RESOLUTION]) * per_inch, float(exif[_Y_RESOLUTION]) * per_inch)
    dpi = (float(dpi[0]), float(dpi[1])) if dpi and dpi[0] and dpi[1] else None
    return ImageMetadata(exif_bytes, icc, xmp or None, dpi)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_metadata(png: bytes, metadata: ImageMetadata) -> bytes:
    """Insert iCCP, eXIf, pHYs and XMP (iTXt) chunks right after a PNG's IHDR (for OpenCV's PNGs)."""
    chunks = []
    if metadata.icc_profile is not None:
        chunks.append(_png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(metadata.icc_profile)))
    if metadata.exif is not None:
        chunks.append(_png_chunk(b"eXIf", metadata.exif.removeprefix(b"Exif\0\0")))
    if metadata.dpi is not None:
        per_metre = [max(1, round(d / 0.0254)) for d in metadata.dpi]
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", *per_metre, 1)))
    if metadata.xmp is not None:
        chunks.append(_png_chunk(b"iTXt", _XMP_PNG_KEY.encode() + b"\0\0\0\0\0" + metadata.xmp))
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length + type, its 13 bytes, CRC
    return png[:end_of_ihdr] + b"".join(chunks) + png[end_of_ihdr:]
