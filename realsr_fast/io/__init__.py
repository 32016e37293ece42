"""Images in and out: 8/16-bit, grey, alpha, EXIF orientation, metadata, atomic writes.

An image outside the library is an `(H, W, C)` numpy array, C in {1 grey, 2 grey+alpha, 3 RGB,
4 RGBA}, dtype uint8 or uint16; inside it is a `(1, C, H, W)` float32 tensor in [0, 1].

The package's names, by job: `files` (suffixes, listing folders, atomic writes), `reading`
(`read_image`), `writing` (`write_image`), `metadata` (EXIF, ICC profile, XMP, DPI kept from the
input) and `tensors` (arrays <-> tensors); the names below are the ones the rest of realsr_fast uses.

Example:
    >>> image = read_image("photo.jpg")               # (H, W, 3) uint8, EXIF orientation applied
    >>> x = image_to_tensor(image)                    # (1, 3, H, W) float32 in [0, 1]
    >>> write_image("out/photo.png", tensor_to_image(x))
"""
from realsr_fast.io.files import (
    HEIF_SUFFIXES,
    IMAGE_SUFFIXES,
    SIXTEEN_BIT_SUFFIXES,
    atomic_path,
    atomic_write,
    list_images,
    write_json,
)
from realsr_fast.io.metadata import ImageMetadata, read_metadata
from realsr_fast.io.reading import read_image
from realsr_fast.io.tensors import image_to_tensor, tensor_to_image
from realsr_fast.io.writing import write_image

__all__ = [
    "HEIF_SUFFIXES", "IMAGE_SUFFIXES", "SIXTEEN_BIT_SUFFIXES", "ImageMetadata", "atomic_path", "atomic_write",
    "image_to_tensor", "list_images", "read_image", "read_metadata", "tensor_to_image", "write_image", "write_json",
]
