"""On-the-fly training pairs against the offline path (`realsr dataset`, then crop): the official
order (blur the whole image, crop, flip both, then noise), one kernel per HR image or per sample."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from realsr_fast import ops
from realsr_fast.data.crops import ContextCropDataset
from realsr_fast.data.degrader import Degrader
from realsr_fast.data.paired import build_paired_dataset
from realsr_fast.data.paired_settings import PairedSettings
from realsr_fast.data.training_pairs import PairMaker, kernel_context, kernel_per_image
from realsr_fast.io import read_image, write_image
from realsr_fast.train.config import load_config
from realsr_fast.train.distributed import DistContext
from realsr_fast.train.trainer import Trainer

SCALE, PATCH, SEED = 4, 32, 7
FLIPS = list(itertools.product((False, True), repeat=3))


def _kernel(rng: np.random.Generator, size: int = 33) -> np.ndarray:
    """A fresh anisotropic, off-centre Gaussian (so flips and borders matter), not normalised."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2 - rng.uniform(-2, 2, 2)[:, None, None]
    angle, s1, s2 = rng.uniform(0, np.pi), rng.uniform(1, 5), rng.uniform(0.6, 2)
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    return np.exp(-0.5 * ((u / s1) ** 2 + (v / s2) ** 2)) * rng.uniform(0.8, 1.2, (size, size))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Fresh random HR images (sizes not multiples of 4), 5 fresh kernels, and their offline dataset."""
    rng = np.random.default_rng()
    for i, (h, w) in enumerate([(61, 75), (70, 66), (64, 83)]):
        write_image(tmp_path / "hr" / f"im{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (tmp_path / "kernels").mkdir()
    for i in range(5):
        np.save(tmp_path / "kernels" / f"k{i}_kernel_x4.npy", _kernel(rng))
    settings = PairedSettings(recipe="kernel", kernels=tmp_path / "kernels", scale=SCALE, seed=SEED)
    build_paired_dataset(tmp_path / "hr", tmp_path / "pairs", settings, progress=False)
    return tmp_path


def _flip(x: np.ndarray, flips: tuple[bool, bool, bool]) -> np.ndarray:
    """Real-SR's `augment` on `(H, W, C)`: horizontal flip, vertical flip, then transpose."""
    x = x[:, ::-1] if flips[0] else x
    x = x[::-1] if flips[1] else x
    return x.transpose(1, 0, 2) if flips[2] else x


def _unflip(x: np.ndarray, flips: tuple[bool, bool, bool]) -> np.ndarray:
    """The inverse of :func:`_flip`."""
    x = x.transpose(1, 0, 2) if flips[2] else x
    x = x[::-1] if flips[1] else x
    return x[:, ::-1] if flips[0] else x


def _find(hr: np.ndarray, images: list[np.ndarray]) -> list[tuple[int, int, int, tuple]]:
    """Every `(image, top, left, flips)` where `hr` is that crop of that image, flipped (any offset)."""
    p, found = hr.shape[0], []
    for flips, (index, image) in itertools.product(FLIPS, enumerate(images)):
        crop = _unflip(hr, flips)
        corners = np.all(image[:image.shape[0] - p + 1, :image.shape[1] - p + 1] == crop[0, 0], axis=-1)
        for top, left in np.argwhere(corners):
            if np.array_equal(image[top:top + p, left:left + p], crop):
                found.append((index, int(top), int(left), flips))
    return found


def _trainer(data: Path, out: Path, *overrides: str) -> Trainer:
    config = load_config(None, [
        f"data.hr={data / 'hr'}", f"data.kernels={data / 'kernels'}", "data.recipe=kernel", f"data.patch={PATCH}",
        "data.batch=4", "data.workers=0", "data.cache=false", f"run.seed={SEED}", "loss.mode=psnr",
        "generator.init=null", "generator.nf=4", "generator.nb=1", "generator.gc=4", "val.hr=null",
        "run.device=cpu", "run.channels_last=false", "run.progress=false", "run.tensorboard=false", f"run.out={out}",
        *overrides])
    return Trainer(config, DistContext())


def test_on_the_fly_pairs_equal_offline_crops_flipped_after_blurring(data, tmp_path):
    """Item 1, 2, 4 and 6 of issue 17 through the trainer's own data path: the LR of every training
    crop is the offline LR (whole image blurred with that image's kernel, 8-bit) of the same crop, to
    rounding, and HR and LR carry the same flip."""
    trainer = _trainer(data, tmp_path / "run")
    hr_files = [read_image(p) for p in sorted((data / "pairs" / "HR").glob("*.png"))]
    lr_files = [read_image(p) for p in sorted((data / "pairs" / "LR").glob("*.png"))]
    seen_flips, border_crops, batches = set(), 0, trainer.batches()
    for step in range(4):
        trainer.iteration = step
        hr, lr = trainer.degrade(next(batches))
        assert hr.shape == (4, 3, PATCH, PATCH) and lr.shape == (4, 3, PATCH // SCALE, PATCH // SCALE)
        lr_255 = lr.numpy() * 255
        np.testing.assert_allclose(lr_255, lr_255.round(), atol=1e-3)  # the 8-bit LR, as in the files
        for b in range(4):
            hr_b = (hr[b].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            found = _find(hr_b, hr_files)
            assert found, "the HR crop is not a crop of a (mod-4) HR image"
            index, top, left, flips = found[0]
            assert top % SCALE == 0 and left % SCALE == 0, "HR crops sit on the LR grid, as the official's"
            rows, cols = slice(top // SCALE, (top + PATCH) // SCALE), slice(left // SCALE, (left + PATCH) // SCALE)
            want = _flip(lr_files[index][rows, cols], flips)
            got = lr[b].permute(1, 2, 0).numpy() * 255
            assert np.abs(got - want).max() <= 1, f"LR differs from the offline LR by {np.abs(got - want).max()}"
            assert np.mean(got != want) < 0.01
            seen_flips.add(flips)
            border_crops += min(top, left) < 16 or top + PATCH + 16 > hr_files[index].shape[0] \
                or left + PATCH + 16 > hr_files[index].shape[1]
    assert len(seen_flips) >= 3 and border_crops > 0  # orientations vary; true borders were exercised


def test_per_image_kernels_are_the_offline_datasets(data):
    manifest = json.loads((data / "pairs" / "manifest.json").read_text())
    assert kernel_per_image(3, 5, SEED).tolist() == [pair["kernel_index"] for pair in manifest["pairs"]]


@pytest.mark.parametrize("draw", ["per_image", "per_sample"])
def test_kernel_draw(data, draw):
    """`per_image`: the same image always gets its one kernel; `per_sample`: a new kernel per crop."""
    rng = np.random.default_rng()
    kernels = torch.from_numpy(np.stack([k / k.sum() for k in (_kernel(rng) for _ in range(6))])).float()
    degrader = Degrader(kernels, None, scale=SCALE, recipe="kernel", generator=torch.Generator().manual_seed(1))
    pairs = PairMaker(degrader, draw, image_count=2, seed=3, augment=False)
    margin = kernel_context(33, SCALE)
    assert pairs.context == margin == 16
    crop = torch.from_numpy(rng.integers(0, 256, (1, 3, PATCH + 2 * margin, PATCH + 2 * margin), dtype=np.uint8))
    outputs = [pairs(crop.expand(8, -1, -1, -1).contiguous(), torch.ones(8, dtype=torch.int64))[1] for _ in range(2)]
    lr = torch.cat(outputs)
    distinct = {tuple(x.flatten().tolist()) for x in lr}
    if draw == "per_sample":
        assert len(distinct) >= 4
        return
    assert len(distinct) == 1
    want = ops.degrade(crop, kernels[kernel_per_image(2, 6, 3)[1]], SCALE, out_dtype=torch.uint8)  # image 1's kernel
    torch.testing.assert_close(lr[0], want[0, :, 4:12, 4:12].float() / 255)


def test_context_crops_mirror_only_at_true_borders():
    rng = np.random.default_rng()
    image = rng.integers(0, 256, (45, 50, 3), dtype=np.uint8)  # cut to 44 x 48 on the x4 grid
    dataset = ContextCropDataset([image], patch=16, context=8, align=4)
    padded = np.pad(image[:44, :48], ((8, 8), (8, 8), (0, 0)), mode="symmetric")
    for seed in range(20):
        torch.manual_seed(seed)
        crop, index = dataset[0]
        crop = crop.permute(1, 2, 0).numpy()
        hits = [(top, left) for top in range(0, 44 - 16 + 1, 4) for left in range(0, 48 - 16 + 1, 4)
                if np.array_equal(padded[top:top + 32, left:left + 32], crop)]
        assert hits and int(index) == 0
