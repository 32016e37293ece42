"""Reading image files into `(H, W, C)` uint8/uint16 arrays: Pillow for everything but 16-bit
colour (it has no 16-bit RGB mode and would silently drop the low byte), which goes through
OpenCV, imported only for those files; HEIC/HEIF/AVIF through pillow-heif."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from realsr_fast.errors import RealSRError
from realsr_fast.io.files import HEIF_SUFFIXES

# Pillow modes returned as they are, and the modes converted to one of them.
_UINT8_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
_UINT16_GREY_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_CONVERT_MODES = {
    "1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB",
    "HSV": "RGB", "RGBX": "RGB", "La": "LA", "RGBa": "RGBA",
}
EXIF_ORIENTATION_TAG = 0x0112



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
    register_heif_for(path)
    try:
        with Image.open(path) as im:
            sixteen_bit_colour = _is_16bit_colour(im)  # before getexif, which may decode a PNG
            orientation = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
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


def register_heif_for(path: Path) -> None:
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


def opencv():
    try:
        import cv2
    except ImportError:
        raise RealSRError(
            "16-bit colour images need OpenCV (Pillow would cut them to 8 bits): "
            "pip install opencv-python-headless"
        ) from None
    return cv2


def _decode_with_opencv(path: Path) -> np.ndarray:
    cv2 = opencv()
    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise RealSRError(f"{path}: cannot decode the 16-bit image, is it truncated or corrupt?")
    if array.ndim == 2:
        return array[..., None]
    return swap_red_blue(array)


def swap_red_blue(array: np.ndarray) -> np.ndarray:
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


def check_image_array(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        shape = getattr(image, "shape", None)
        raise RealSRError(f"expected an (H, W, C) array with C in 1..4, got shape {shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise RealSRError(f"expected a uint8 or uint16 image, got {image.dtype}")
