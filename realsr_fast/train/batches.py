"""The trainer's inputs: an endless, resumable stream of uint8 HR crops (or aligned HR/LR crops of
an offline dataset), the banks, the validation set.

Resumability without loader state: the stream is a function of (seed, position). Epoch e is a
permutation of the dataset drawn from `seed` and e; global position p = e * N + i holds image
`perm_e[i]`, cropped and flipped with torch's RNG seeded from (seed, p). Rank r of W takes the
positions r, r + W, r + 2W, ..., so after `iteration` steps of `b` crops per rank it resumes at
its item `iteration * b`, whatever the number of loader workers.

On the fly (`data.hr`) an item is an HR crop with the margin its blur needs and its image's index
(:class:`ContextCropDataset`); the :class:`realsr_fast.data.training_pairs.PairMaker` on the device turns a batch of them into
`(hr, lr)` in the official order (blur the whole crop, drop the margin, flip both, add noise).

An offline dataset (`data.paired`, written by `realsr dataset`) streams `(hr, lr)` uint8 crop pairs
the same way; on the device a Degrader at scale 1 with the 1x1 identity kernel only adds the
zero-mean real-noise crop to the LR and clamps (docs/METHOD.md §5), reseeded per step as usual.
"""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from realsr_fast.batch import to_rgb8
from realsr_fast.data.crops import ContextCropDataset
from realsr_fast.data.degrader import Degrader
from realsr_fast.data.imresize import bicubic_kernel
from realsr_fast.data.kernel_bank import kernel_size_for_scale, load_kernel_bank, stack_kernels
from realsr_fast.data.noise_bank import load_noise_bank
from realsr_fast.data.paired_reader import PairedCropDataset, paired_files
from realsr_fast.data.recipes import get_recipe
from realsr_fast.errors import RealSRError
from realsr_fast.io import list_images, read_image
from realsr_fast.kernel_estimation.gaussians import anisotropic_gaussian, x4_kernel
from realsr_fast.train.config import BUILTIN_SAMPLES, BUILTIN_SYNTHETIC, DataConfig

SYNTHETIC_KERNELS = 7
SYNTHETIC_NOISE_PATCHES, SYNTHETIC_NOISE_SIZE = 16, 64
_SEED_STRIDE = 1 << 40  # positions of one seed's stream never reach the next seed's
IDENTITY_KERNEL = torch.ones(1, 1, 1)  # (1, 1, 1): at scale 1, ops.degrade leaves the image as it is


class StreamSampler(Sampler):
    """Endless `(index, crop_seed)` items of rank `rank` of `world_size`, from item `start` on."""

    def __init__(self, length: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        self.length, self.seed, self.rank, self.world_size, self.start = length, seed, rank, world_size, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start * self.world_size + self.rank
        epoch, order = -1, None
        while True:
            if position // self.length != epoch:
                epoch = position // self.length
                order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            yield int(order[position % self.length]), self.seed * _SEED_STRIDE + position
            position += self.world_size


class SeededCrops(Dataset):
    """A crop dataset (`ContextCropDataset`, `PairedCropDataset`) whose item `(index, seed)` is cropped
    with torch's RNG seeded by `seed`."""

    def __init__(self, crops: Dataset) -> None:
        self.crops = crops

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.crops[index]


def stack_uint8(samples: list[torch.Tensor]) -> torch.Tensor:
    """`B x (3, P, P)` uint8 -> `(B, 3, P, P)`, stacked in numpy (torch.stack in the main process
    wakes torch's thread pool, slow on a busy CPU; see benchmarks/bench_data.py)."""
    return torch.from_numpy(np.stack([s.numpy() for s in samples]))


def stack_pairs(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """`B x (a, b)` tensor pairs -> `(B, *a.shape)` and `(B, *b.shape)`: offline `(hr, lr)` uint8
    crops, or on-the-fly `(crop with margin, image index)`."""
    return stack_uint8([hr for hr, _ in samples]), stack_uint8([lr for _, lr in samples])


def hr_source(path: str) -> str | Path:
    """A configured image folder, `builtin:samples` meaning the package's sample photos."""
    if path == BUILTIN_SAMPLES:
        return Path(str(importlib.resources.files("realsr_fast").joinpath("samples")))
    return path


def crop_dataset(config: DataConfig, scale: int, context: int = 0) -> Dataset:
    """The crops of `config`: :class:`PairedCropDataset` for `config.paired`, else
    :class:`ContextCropDataset` of `config.hr` (and `config.hr_as_given`, sorted together) with a `context`-px margin on a `scale` grid."""
    if config.paired is not None:
        return PairedCropDataset(paired_files(config.paired, scale), config.patch, scale, cache=config.cache)
    source = hr_source(config.hr)
    if config.hr_as_given is not None:
        source = list_images([source, config.hr_as_given])
    return ContextCropDataset(source, patch=config.patch, context=context, align=scale, cache=config.cache)


def crop_stream(crops: Dataset, sampler: StreamSampler, batch: int, workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader of endless batches of `crops` in `sampler`'s order (one rank's stream from its
    start item): on the fly `(crops with margin, image index)`, `(batch, 3, P + 2c, P + 2c)` uint8
    and `(batch,)` int64; from an offline dataset `(hr, lr)` uint8 pairs, `(batch, 3, P, P)` and
    `(batch, 3, P/s, P/s)`."""
    return DataLoader(SeededCrops(crops), batch_size=batch, sampler=sampler, num_workers=workers,
                      collate_fn=stack_pairs, pin_memory=pin_memory, persistent_workers=workers > 0)


def synthetic_kernel_bank(scale: int, seed: int = 0) -> torch.Tensor:
    """`(8, k, k)`: the MATLAB bicubic kernel and 7 seeded anisotropic Gaussians (`k = 8 scale + 1`)."""
    rng = np.random.default_rng(seed)
    size = kernel_size_for_scale(scale)
    kernels = [bicubic_kernel(scale, size, dtype=torch.float64).numpy()]
    kernels += [x4_kernel(rng) if scale == 4 else anisotropic_gaussian(rng, scale=scale) for _ in range(SYNTHETIC_KERNELS)]
    return stack_kernels(kernels, scale)


def synthetic_noise_bank(seed: int = 0) -> torch.Tensor:
    """`(16, 3, 64, 64)` uint8 Gaussian noise around 128, sigma from 1 to 8 (of 255)."""
    generator = torch.Generator().manual_seed(seed)
    sigmas = torch.linspace(1, 8, SYNTHETIC_NOISE_PATCHES).view(-1, 1, 1, 1)
    shape = (SYNTHETIC_NOISE_PATCHES, 3, SYNTHETIC_NOISE_SIZE, SYNTHETIC_NOISE_SIZE)
    return (128 + sigmas * torch.randn(shape, generator=generator)).round().clamp(0, 255).to(torch.uint8)


def build_degrader(config: DataConfig, scale: int, generator: torch.Generator | None) -> Degrader:
    """The Degrader of `config.recipe` with its banks (folders or `builtin:synthetic`); for an
    offline dataset, its :func:`noise_adder`."""
    if config.paired is not None:
        return noise_adder(config, generator)
    kernels = noise = None
    recipe = get_recipe(config.recipe)
    if recipe.kernels:
        if config.kernels is None:
            raise RealSRError(f"the {config.recipe!r} recipe needs data.kernels (a folder from `realsr kernels`, "
                              f"or {BUILTIN_SYNTHETIC})")
        kernels = synthetic_kernel_bank(scale) if config.kernels == BUILTIN_SYNTHETIC else load_kernel_bank(config.kernels, scale)
    if recipe.noise:
        if config.noise is None:
            raise RealSRError(f"the {config.recipe!r} recipe needs data.noise (a folder from `realsr noise`, "
                              f"or {BUILTIN_SYNTHETIC})")
        noise = synthetic_noise_bank() if config.noise == BUILTIN_SYNTHETIC else load_noise_bank(config.noise)
    return Degrader(kernels, noise, scale=scale, recipe=config.recipe, generator=generator,
                    jpeg_quality=config.jpeg_quality if recipe.jpeg else None)


def noise_adder(config: DataConfig, generator: torch.Generator | None) -> Degrader:
    """The device step of an offline dataset: a Degrader at scale 1 with the 1x1 identity kernel, so
    `(B, 3, h, w)` uint8 LR -> float LR plus, when `config.recipe` ends in `+noise`, a zero-mean crop
    of a random patch of `PAIRED/noise`, clamped to [0, 1] (one op call)."""
    if not get_recipe(config.recipe).noise:
        return Degrader(IDENTITY_KERNEL, None, scale=1, recipe="kernel", generator=generator)
    folder = Path(config.paired) / "noise"
    if not folder.is_dir():
        raise RealSRError(f"{config.paired} has no noise/ folder, which the {config.recipe!r} recipe needs: rebuild it "
                          "with `realsr dataset ... --noise NOISE_DIR`, or set data.recipe=kernel to train without noise")
    return Degrader(IDENTITY_KERNEL, load_noise_bank(folder), scale=1, recipe="kernel+noise", generator=generator)


@dataclass
class ValidationImage:
    """One held-out pair: `hr` `(1, 3, H, W)` uint8 and `lr` `(1, 3, H/s, W/s)` float, on the device."""

    name: str
    hr: torch.Tensor
    lr: torch.Tensor


def validation_set(folder: str, degrader: Degrader, max_images: int, crop: int | None,
                   device: torch.device) -> list[ValidationImage]:
    """The first `max_images` images of `folder`, centre-cropped to `crop` (and to a multiple of the
    scale), degraded once by `degrader` (whose generator fixes the draws)."""
    files = list_images([hr_source(folder)])[:max_images]
    if not files:
        raise RealSRError(f"{folder}: no validation images (val.hr)")
    scale, pairs = degrader.scale, []
    for path in files:
        image = to_rgb8(read_image(path))
        h, w = image.shape[:2]
        th, tw = (min(h, crop), min(w, crop)) if crop else (h, w)
        th, tw = th - th % scale, tw - tw % scale
        if min(th, tw) < 4 * scale:
            raise RealSRError(f"{path} is too small to validate on ({w}x{h})")
        top, left = (h - th) // 2, (w - tw) // 2
        hr = torch.from_numpy(np.ascontiguousarray(image[top:top + th, left:left + tw].transpose(2, 0, 1)))[None].to(device)
        with torch.no_grad():
            lr = degrader(hr)
        pairs.append(ValidationImage(path.stem, hr, lr))
    return pairs


def paired_validation_set(folder: str, scale: int, max_images: int, crop: int | None,
                          device: torch.device) -> list[ValidationImage]:
    """The first `max_images` pairs of an offline dataset, centre-cropped alike (the HR to `crop`,
    the LR to `crop / scale`); the LR is used as it is in the file (Real-SR validates without noise)."""
    pairs = []
    for hr_path, lr_path in paired_files(folder, scale)[:max_images]:
        hr, lr = to_rgb8(read_image(hr_path)), to_rgb8(read_image(lr_path))
        h, w = lr.shape[:2]
        th, tw = (min(h, crop // scale), min(w, crop // scale)) if crop else (h, w)
        if min(th, tw) < 4:
            raise RealSRError(f"{lr_path} is too small to validate on ({w}x{h})")
        top, left = (h - th) // 2, (w - tw) // 2
        hr = hr[scale * top:scale * (top + th), scale * left:scale * (left + tw)]
        lr = lr[top:top + th, left:left + tw]
        hr_t, lr_t = (torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(device) for x in (hr, lr))
        pairs.append(ValidationImage(hr_path.stem, hr_t, lr_t.float().div_(255)))
    return pairs
