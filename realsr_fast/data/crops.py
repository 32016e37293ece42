"""Training input: random uint8 HR crops (:class:`HRCropDataset`, with flips and 90-degree
rotations), or crops with the margin a blur needs and no flips (:class:`ContextCropDataset`, what
training uses: the flips come after the degradation, as in the official code).

The datasets do nothing but decode (or look up), crop and flip bytes, so worker processes stay
cheap and batches travel to the device as uint8 (a quarter of float32's bytes, pinned); the
degradation to LR happens there (:class:`realsr_fast.data.training_pairs.PairMaker`).

Images come from a folder (decoded on every access) or from memory (`cache=True` decodes them
once; with the default fork start method the workers share those pages). Random numbers come from
torch's generator, which the DataLoader seeds per worker from its own generator: a seeded loader
with workers gives the same crops on every run (without workers, torch.manual_seed decides).

Example:
    >>> dataset = HRCropDataset("dped_pairs/HR", patch=128, cache=True)
    >>> loader = DataLoader(dataset, batch_size=16, shuffle=True, num_workers=4,
    ...                     generator=torch.Generator().manual_seed(10))
    >>> hr = next(iter(loader))        # (16, 3, 128, 128) uint8
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
from tqdm import tqdm

from realsr_fast.batch import to_rgb8
from realsr_fast.errors import RealSRError
from realsr_fast.io import list_images, read_image
from realsr_fast.ops import symmetric_index


class HRCropDataset(Dataset):
    """Random `patch x patch` crops of HR images, as `(3, patch, patch)` uint8 RGB tensors.

    Args:
        source: a folder of HR images, a list of image files, or a list of `(H, W, 3)` uint8
            arrays (an in-memory cache made elsewhere).
        patch: crop side (RealSR: 128).
        augment: random horizontal flip, vertical flip and transpose (90-degree rotations), each
            with probability 1/2 (Real-SR's `augment`).
        cache: decode the files once at construction and keep them in memory.
        repeat: crops per image per epoch (the dataset's length is `repeat` x the image count).

    Images smaller than the patch, or whose header cannot be read, are skipped with a warning
    that names them; none left raises RealSRError.
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike] | Sequence[np.ndarray],
        patch: int = 128,
        augment: bool = True,
        cache: bool = False,
        repeat: int = 1,
    ) -> None:
        if patch < 1 or repeat < 1:
            raise RealSRError(f"patch and repeat must be at least 1, got {patch} and {repeat}")
        self.patch, self.augment, self.repeat = patch, augment, repeat
        items = _as_items(source)
        if items and isinstance(items[0], np.ndarray):
            arrays = [_checked_array(item) for item in items]
            skipped = [f"array {i} ({a.shape[0]}x{a.shape[1]})" for i, a in enumerate(arrays) if min(a.shape[:2]) < patch]
            self.files: list[Path] = []
            self.images: list[np.ndarray] | None = [a for a in arrays if min(a.shape[:2]) >= patch]
            count = len(self.images)
        else:
            self.files, skipped = _usable_files(items, patch)
            self.images = [to_rgb8(read_image(path)) for path in tqdm(self.files, desc="caching HR", unit="image")] if cache else None
            count = len(self.files)
        if skipped:
            warnings.warn(f"{len(skipped)} HR image(s) skipped (smaller than the {patch}-px patch, or unreadable): "
                          + ", ".join(skipped), stacklevel=2)
        if count == 0:
            raise RealSRError(f"no HR image of at least {patch}x{patch} pixels to crop from")
        self.count = count

    def __len__(self) -> int:
        return self.count * self.repeat

    def image(self, index: int) -> np.ndarray:
        """Image `index` (modulo the image count) as `(H, W, 3)` uint8."""
        index %= self.count
        if self.images is not None:
            return self.images[index]
        return to_rgb8(read_image(self.files[index]))

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.image(index)
        top = int(torch.randint(image.shape[0] - self.patch + 1, ()))
        left = int(torch.randint(image.shape[1] - self.patch + 1, ()))
        crop = image[top:top + self.patch, left:left + self.patch]
        (crop,) = augmented_chw([crop], self.augment)
        return crop


def augmented_chw(crops: list[np.ndarray], augment: bool) -> list[torch.Tensor]:
    """`(H, W, C)` arrays -> `(C, H, W)` uint8 tensors, all given the same random horizontal flip,
    vertical flip and transpose (each with probability 1/2, from torch's RNG) when `augment`."""
    if augment:
        hflip, vflip, transpose = torch.rand(3).lt(0.5).tolist()
        crops = [crop[:, ::-1] if hflip else crop for crop in crops]
        crops = [crop[::-1] if vflip else crop for crop in crops]
        crops = [crop.transpose(1, 0, 2) if transpose else crop for crop in crops]
    return [torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))) for crop in crops]


def _as_items(source) -> list:
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise RealSRError(f"{folder}: no such folder of HR images")
        return list_images([folder])
    return list(source)


def _checked_array(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise RealSRError(f"in-memory HR images must be (H, W, 3) uint8 arrays, got {image.shape} {image.dtype}")
    return image


def _usable_files(files: list, patch: int) -> tuple[list[Path], list[str]]:
    """Files whose header reads and whose smaller side holds a patch (EXIF rotation keeps it)."""
    usable, skipped = [], []
    for path in map(Path, files):
        try:
            with Image.open(path) as im:
                size = im.size
        except Exception as exc:  # Pillow raises many types for bad files
            skipped.append(f"{path} ({exc.__class__.__name__})")
            continue
        if min(size) < patch:
            skipped.append(f"{path} ({size[1]}x{size[0]})")
        else:
            usable.append(path)
    return usable, skipped


class ContextCropDataset(HRCropDataset):
    """HR crops with the margin a blur kernel needs, for LR made on the device as offline.

    Item `i` is `(crop, image)`: `crop` `(3, patch + 2 context, patch + 2 context)` uint8, whose
    centre `patch x patch` is the training HR; `image` is the int64 index of its source image (so
    that a kernel can be fixed per image). The margin is the image's own pixels, mirrored
    (half-sample symmetric, as the whole-image blur pads) only where it passes a true image border;
    so blurring the crop and keeping the centre equals blurring the whole image, then cropping.

    Official order (Real-SR `LQGT_dataset.py`): each image is first cut to a multiple of `align`
    (the scale, as the offline LR maker does) and the top-left corner of the centre sits on that
    grid; no flips here (they come after the degradation, see `data/training_pairs.py`).

    Args:
        source, patch, cache, repeat: as :class:`HRCropDataset` (`patch` a multiple of `align`).
        context: the margin in pixels on each side (a multiple of `align`).
        align: the LR grid step, i.e. the scale.
    """

    def __init__(self, source, patch: int = 128, context: int = 0, align: int = 1, cache: bool = False,
                 repeat: int = 1) -> None:
        if align < 1 or patch % align or context % align or context < 0:
            raise RealSRError(f"patch ({patch}) and context ({context}) must be multiples of the scale ({align})")
        super().__init__(source, patch=patch, augment=False, cache=cache, repeat=repeat)
        self.context, self.align = context, align

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.image(index)
        height, width = image.shape[0] - image.shape[0] % self.align, image.shape[1] - image.shape[1] % self.align
        if min(height, width) < self.patch:
            raise RealSRError(f"HR image {index % self.count} is smaller than the patch once cut to a multiple of "
                              f"the scale ({height}x{width} < {self.patch})")
        top = self.align * int(torch.randint((height - self.patch) // self.align + 1, ()))
        left = self.align * int(torch.randint((width - self.patch) // self.align + 1, ()))
        crop = _crop_with_margin(image[:height, :width], top, left, self.patch, self.context)
        return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))), torch.tensor(index % self.count)


def _crop_with_margin(image: np.ndarray, top: int, left: int, size: int, margin: int) -> np.ndarray:
    """`image[top - margin : top + size + margin, left - margin : ...]` `(H, W, C)`, the parts past the
    image borders mirrored half-sample symmetrically (d c b a | a b c d), as np.pad 'symmetric'."""
    height, width = image.shape[:2]
    rows = np.arange(top - margin, top + size + margin)
    cols = np.arange(left - margin, left + size + margin)
    return image[_mirrored(rows, height)][:, _mirrored(cols, width)]


def _mirrored(index: np.ndarray, length: int) -> np.ndarray:
    """`ops.symmetric_index` of numpy indices (the degradation op's own padding rule)."""
    return symmetric_index(torch.from_numpy(index), length).numpy()
