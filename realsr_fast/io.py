"""Images in and out: 8/16-bit, grey, alpha, EXIF orientation, atomic writes.

An image outside the library is an `(H, W, C)` numpy array, C in {1 grey, 2 grey+alpha, 3 RGB,
4 RGBA}, dtype uint8 or uint16; inside it is a `(1, C, H, W)` float32 tensor in [0, 1].

Pillow decodes and encodes everything except 16-bit colour (it has no 16-bit RGB mode and would
silently drop the low byte); those files go through OpenCV, which is imported only for them.

Example:
    >>> image = read_image("photo.jpg")               # (H, W, 3) uint8, EXIF orientation applied
    >>> x = image_to_tensor(image)                    # (1, 3, H, W) float32 in [0, 1]
    >>> write_image("out/photo.png", tensor_to_image(x))
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, Sequence

import numpy as np
from PIL import Image

from realsr_fast.errors import RealSRError
from realsr_fast.image_formats import DEFAULT_QUALITY, OUTPUT_FORMATS  # noqa: F401 (OUTPUT_FORMATS: re-exported)

if TYPE_CHECKING:
    import torch

# HEIC/HEIF (and AVIF where Pillow lacks it) are read through the optional pillow-heif package.
HEIF_SUFFIXES: frozenset[str] = frozenset({".heic", ".heif", ".avif"})

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
) | HEIF_SUFFIXES

# Suffixes whose formats store 16 bits per channel (others get 8-bit images).
SIXTEEN_BIT_SUFFIXES: frozenset[str] = frozenset({".png", ".tif", ".tiff"})

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

# Pillow modes returned as they are, and the modes converted to one of them.
_UINT8_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
_UINT16_GREY_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_CONVERT_MODES = {
    "1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB",
    "HSV": "RGB", "RGBX": "RGB", "La": "LA", "RGBa": "RGBA",
}
_EXIF_ORIENTATION_TAG = 0x0112


def list_images(inputs: Sequence[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    A file given by name is kept whatever its suffix (reading it reports a non-image by name).
    A folder contributes its files with an image suffix (png, jpg, jpeg, webp, tif, tiff, bmp,
    any case), skipping hidden names such as `.DS_Store` or `._photo.jpg`; with `recursive`
    its sub-folders too. A path that does not exist raises RealSRError.
    """
    found: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.update(_images_in_folder(path, recursive))
        elif path.exists():
            found.add(path)
        else:
            raise RealSRError(f"{path}: no such file or folder")
    return sorted(found)


def _images_in_folder(folder: Path, recursive: bool) -> Iterator[Path]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    for path in candidates:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            yield path


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an `(H, W, C)` uint8 or uint16 array with EXIF orientation applied.

    C is 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); palette images become RGB(A), CMYK
    becomes RGB. 16-bit files stay uint16. A missing, empty, truncated, unreadable or non-image
    file raises RealSRError naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise RealSRError(f"{path}: is a folder, not an image file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RealSRError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise RealSRError(f"{path}: empty file (0 bytes), not an image")
    _register_heif_for(path)
    try:
        with Image.open(path) as im:
            sixteen_bit_colour = _is_16bit_colour(im)  # before getexif, which may decode a PNG
            orientation = im.getexif().get(_EXIF_ORIENTATION_TAG, 1)
            if sixteen_bit_colour:
                im.load()  # an 8-bit decode that Pillow checks for truncation; OpenCV would not say
                array = _decode_with_opencv(path)
            else:
                array = _pil_to_array(im)
                if im.format == "TIFF":
                    orientation = 1  # Pillow turns a TIFF by its orientation tag as it loads it
    except (RealSRError, MemoryError):
        raise
    except Image.DecompressionBombError as exc:
        raise RealSRError(f"{path}: too large to read safely ({exc})") from None
    except Image.UnidentifiedImageError:
        raise RealSRError(
            f"{path}: not an image, or not a format we read (PNG, JPEG, WebP, TIFF, BMP, HEIC/AVIF)"
        ) from None
    except Exception as exc:  # Pillow raises many types for bad data: OSError, SyntaxError, ...
        raise RealSRError(
            f"{path}: cannot decode the image, is it truncated or corrupt? ({exc})"
        ) from None
    return _apply_exif_orientation(array, orientation)


def _register_heif_for(path: Path) -> None:
    """Teach Pillow HEIC/HEIF (and AVIF, when Pillow has no AVIF of its own) through pillow-heif."""
    suffix = path.suffix.lower()
    if suffix not in HEIF_SUFFIXES:
        return
    from PIL import features

    if suffix == ".avif" and features.check("avif"):
        return
    try:
        import pillow_heif
    except ImportError:
        raise RealSRError(f"{path}: {suffix[1:].upper()} images need the pillow-heif package, which is not "
                          "installed: pip install 'realsr_fast[heif]'") from None
    pillow_heif.register_heif_opener()
    if suffix == ".avif" and hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()


def _is_16bit_colour(im: Image.Image) -> bool:
    """True for 16-bit RGB(A) or grey+alpha files, which Pillow would decode to 8 bits."""
    if im.mode in _UINT16_GREY_MODES or im.mode in ("I", "F"):  # 32-bit grey: not colour, read by Pillow
        return False
    if im.format == "PNG":
        return im.fp is not None and _png_bit_depth(im) == 16
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, 8)  # BitsPerSample: an int or one per channel
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    return False


def _png_bit_depth(im: Image.Image) -> int:
    """The bit depth byte of the IHDR chunk (signature 8 + length 4 + type 4 + size 8 = byte 24)."""
    position = im.fp.tell()
    im.fp.seek(24)
    depth = im.fp.read(1)[0]
    im.fp.seek(position)
    return depth


def _pil_to_array(im: Image.Image) -> np.ndarray:
    if "transparency" in im.info and im.mode in ("P", "L", "RGB"):
        im = im.convert("LA" if im.mode == "L" else "RGBA")
    elif im.mode in _CONVERT_MODES:
        im = im.convert(_CONVERT_MODES[im.mode])
    if im.mode in _UINT8_MODES:
        return np.asarray(im, dtype=np.uint8).reshape(im.height, im.width, _UINT8_MODES[im.mode])
    if im.mode in _UINT16_GREY_MODES:
        return np.asarray(im).astype(np.uint16)[..., None]
    if im.mode == "I":  # 32-bit integer grey: accepted when it holds 16-bit values
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise RealSRError(
                f"{im.filename}: 32-bit integer pixels outside 0..65535 are not supported"
            )
        return values.astype(np.uint16)[..., None]
    raise RealSRError(
        f"{im.filename}: pixel format {im.mode!r} is not supported; convert it to 8- or 16-bit "
        "grey or RGB first"
    )


def _opencv():
    try:
        import cv2
    except ImportError:
        raise RealSRError(
            "16-bit colour images need OpenCV (Pillow would cut them to 8 bits): "
            "pip install opencv-python-headless"
        ) from None
    return cv2


def _decode_with_opencv(path: Path) -> np.ndarray:
    cv2 = _opencv()
    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise RealSRError(f"{path}: cannot decode the 16-bit image, is it truncated or corrupt?")
    if array.ndim == 2:
        return array[..., None]
    return _swap_red_blue(array)


def _swap_red_blue(array: np.ndarray) -> np.ndarray:
    """RGB(A) <-> BGR(A) for OpenCV; grey and grey+alpha are returned as they are."""
    if array.shape[2] < 3:
        return array
    order = [2, 1, 0, 3][: array.shape[2]]
    return np.ascontiguousarray(array[..., order])


def _apply_exif_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn `(H, W, C)` pixels as stored into pixels as meant to be shown (EXIF tag 274)."""
    transposed = array.transpose(1, 0, 2)
    oriented = {
        2: array[:, ::-1],             # mirrored left-right
        3: array[::-1, ::-1],          # rotated 180
        4: array[::-1],                # mirrored top-bottom
        5: transposed,                 # mirrored across the main diagonal
        6: transposed[:, ::-1],        # rotated 90 clockwise to show
        7: transposed[::-1, ::-1],     # mirrored across the anti-diagonal
        8: transposed[::-1],           # rotated 90 counter-clockwise to show
    }.get(orientation, array)
    return np.ascontiguousarray(oriented)


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
    _check_image_array(image)
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
            data = _png_with_metadata(data, metadata)
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


def _check_image_array(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        shape = getattr(image, "shape", None)
        raise RealSRError(f"expected an (H, W, C) array with C in 1..4, got shape {shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise RealSRError(f"expected a uint8 or uint16 image, got {image.dtype}")


def _encode_with_opencv(image: np.ndarray, suffix: str) -> bytes:
    """Encode 16-bit grey+alpha / RGB / RGBA; OpenCV has no grey+alpha, so that becomes RGBA."""
    cv2 = _opencv()
    if image.shape[2] == 2:
        image = image[..., [0, 0, 0, 1]]
    ok, buffer = cv2.imencode(suffix, _swap_red_blue(image))
    if not ok:
        raise RealSRError(f"OpenCV could not encode a 16-bit {suffix} image of shape {image.shape}")
    return buffer.tobytes()


# Metadata ---------------------------------------------------------------------------------------

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
    _register_heif_for(path)
    try:
        with Image.open(path) as im:
            info = im.info
            exif = im.getexif()
            orientation = exif.get(_EXIF_ORIENTATION_TAG, 1)
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
    if _EXIF_ORIENTATION_TAG in exif:
        exif[_EXIF_ORIENTATION_TAG] = 1
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


def _png_with_metadata(png: bytes, metadata: ImageMetadata) -> bytes:
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


def write_json(path: str | os.PathLike, content: object) -> None:
    """Write `content` as indented JSON (and a final newline), atomically; folders are created."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as file:
        json.dump(content, file, indent=2)
        file.write("\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path beside `path` that replaces `path` when the block succeeds.

    For writers that want a file name (safetensors, onnx.save); on any error, Ctrl-C included,
    the temporary file is removed and `path` is left as it was. OSError passes through.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object whose content replaces `path` only when the block succeeds.

    The data goes to a hidden temporary file in the same folder (so the final `os.replace` is an
    atomic rename on one file system); on any error, Ctrl-C included, the temporary file is
    removed and `path` is left as it was. Text modes use UTF-8.

    Example:
        >>> with atomic_write("report.json", "w") as f:
        ...     json.dump(results, f)
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write writes a new file; mode must contain 'w', got {mode!r}")
    # os.open with 0o666 lets the umask decide the permissions, as for a plain open().
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        with atomic_path(path) as temporary:
            descriptor = os.open(temporary, flags, 0o666)
            with os.fdopen(descriptor, mode, encoding=None if "b" in mode else "utf-8") as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
    except OSError as exc:  # unwritable folder, a folder in the way, disk full...
        raise RealSRError(f"cannot write {path}: {exc.strerror or exc}") from None


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """`(H, W, C)` uint8 or uint16 -> `(1, C, H, W)` float32 in [0, 1] (divided by 255 or 65535)."""
    import torch  # here, so that `realsr --help` does not wait for torch

    _check_image_array(image)
    peak = float(np.iinfo(image.dtype).max)
    pixels = torch.from_numpy(np.ascontiguousarray(image).astype(np.float32))
    return (pixels / peak).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_image(x: torch.Tensor, dtype: type[np.integer] | np.dtype = np.uint8) -> np.ndarray:
    """`(1, C, H, W)` or `(C, H, W)` float in [0, 1] -> `(H, W, C)` uint8/uint16.

    Values are clamped to [0, 1] and rounded to the nearest level, ties to even (torch.round).
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"dtype must be uint8 or uint16, got {dtype}")
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image (1, C, H, W), got shape {tuple(x.shape)}")
        x = x[0]
    if x.dim() != 3:
        raise ValueError(f"expected (1, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    peak = float(np.iinfo(dtype).max)
    import torch

    # One float temporary (clamp copies, the rest is in place): outputs can be gigabytes.
    levels = x.detach().to("cpu", torch.float32).clamp(0, 1).mul_(peak).round_()
    return levels.permute(1, 2, 0).numpy().astype(dtype)
