"""Training pairs per second: degrading on the fly vs reading offline pairs, timed in the same run.

    python -m pytest benchmarks/bench_data.py --benchmark-json benchmarks/results/data_cpu.json
    python benchmarks/ratios.py benchmarks/results/data_cpu.json

One round makes one training batch: 16 (HR 128^2, LR 32^2) pairs at x4 with real noise, on the
device, from 16 HR images of 680 x 1020 (a cleaned DF2K image's size), 33x33 kernels, a bank of
32 noise patches of 256^2.

- ours (on the fly): HRCropDataset gives 16 uint8 HR crops with flips/rotations; they go to the
  device and the Degrader makes LR with a random kernel and noise crop per sample (one op call).
- baseline (offline, Real-SR's LQGT_dataset): per sample read the HR and LR files of a pair made by
  `realsr dataset`, crop aligned patches, flip/rotate both, add a random noise crop minus its mean
  to the LR in numpy, clamp; the float batch goes to the device.

Two groups: from files (both decode PNGs every time) and in memory (both decode once).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realsr_fast.data.crops import HRCropDataset
from realsr_fast.data.degrader import Degrader
from realsr_fast.data.kernel_bank import load_kernel_bank
from realsr_fast.data.noise_bank import load_noise_bank
from realsr_fast.data.paired import build_paired_dataset
from realsr_fast.data.paired_settings import PairedSettings
from realsr_fast.io import read_image, write_image

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")])]
BATCH, HR_PATCH, SCALE = 16, 128, 4
LR_PATCH = HR_PATCH // SCALE
ROUNDS = dict(rounds=5, iterations=1, warmup_rounds=1)


def photo_like(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour fields plus mild noise: compresses and decodes like a photo, unlike white noise."""
    coarse = rng.random((h // 32 + 2, w // 32 + 2, 3))
    smooth = np.kron(coarse, np.ones((32, 32, 1)))[:h, :w]
    return np.clip(smooth * 255 + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(2020)
    root = tmp_path_factory.mktemp("bench_data")
    for i in range(BATCH):
        write_image(root / "hr" / f"{i:04d}.png", photo_like(rng, 680, 1020))
        kernel = rng.random((33, 33)) ** 4
        (root / "kernels").mkdir(exist_ok=True)
        np.save(root / "kernels" / f"{i:04d}_kernel_x4.npy", kernel / kernel.sum())
    for i in range(32):
        write_image(root / "noise" / f"n{i:02d}.png", np.clip(rng.normal(128, 3, (256, 256, 3)), 0, 255).astype(np.uint8))
    build_paired_dataset(root / "hr", root / "pairs", PairedSettings(kernels=root / "kernels", noise=root / "noise"), progress=False)
    return root


def degrader(data, device) -> Degrader:
    return Degrader(load_kernel_bank(data / "kernels", SCALE), load_noise_bank(data / "noise"), scale=SCALE,
                    recipe="kernel+noise", generator=torch.Generator().manual_seed(0)).to(device)


def collate(samples) -> torch.Tensor:
    """Both paths batch with numpy: on a busy 2-core machine torch.stack's thread-pool wake-up alone
    took ~100 ms (DataLoader workers run torch with one thread and do not pay it)."""
    return torch.from_numpy(np.stack([np.asarray(sample) for sample in samples]))


def on_the_fly_batch(dataset: HRCropDataset, deg: Degrader, device: str):
    hr = collate([dataset[i] for i in range(BATCH)])
    if device == "cuda":
        hr = hr.pin_memory().to(device, non_blocking=True)
    lr = deg(hr)
    if device == "cuda":
        torch.cuda.synchronize()
    return hr, lr


class OfflinePairs:
    """Real-SR's LQGT_dataset on the files of `realsr dataset`: aligned crops, augment, online noise."""

    def __init__(self, data, cache: bool):
        self.hr_files = sorted((data / "pairs" / "HR").iterdir())
        self.lr_files = [data / "pairs" / "LR" / path.name for path in self.hr_files]
        noise = load_noise_bank(data / "pairs" / "noise").patches
        self.noise = noise.permute(0, 2, 3, 1).numpy().astype(np.float32) / 255
        self.cache = [(read_image(h), read_image(lr)) for h, lr in zip(self.hr_files, self.lr_files)] if cache else None
        self.rng = np.random.default_rng(0)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self.cache is not None:
            hr, lr = self.cache[index]
        else:
            hr, lr = read_image(self.hr_files[index]), read_image(self.lr_files[index])
        top = self.rng.integers(0, lr.shape[0] - LR_PATCH + 1)
        left = self.rng.integers(0, lr.shape[1] - LR_PATCH + 1)
        lr = lr[top:top + LR_PATCH, left:left + LR_PATCH].astype(np.float32) / 255
        hr = hr[top * SCALE:top * SCALE + HR_PATCH, left * SCALE:left * SCALE + HR_PATCH].astype(np.float32) / 255
        flip, mirror, rotate = self.rng.random(3) < 0.5
        for apply, op in ((flip, lambda x: x[:, ::-1]), (mirror, lambda x: x[::-1]), (rotate, lambda x: x.transpose(1, 0, 2))):
            if apply:
                hr, lr = op(hr), op(lr)
        patch = self.noise[self.rng.integers(len(self.noise))]
        ny, nx = self.rng.integers(0, patch.shape[0] - LR_PATCH + 1, 2)
        crop = patch[ny:ny + LR_PATCH, nx:nx + LR_PATCH]
        lr = np.clip(lr + crop - crop.mean(axis=(0, 1)), 0, 1)
        return np.ascontiguousarray(hr.transpose(2, 0, 1)), np.ascontiguousarray(lr.transpose(2, 0, 1))

    def batch(self, device: str):
        hr, lr = zip(*(self.pair(i) for i in range(BATCH)))
        hr, lr = collate(hr), collate(lr)
        if device == "cuda":
            hr = hr.pin_memory().to(device, non_blocking=True)
            lr = lr.pin_memory().to(device, non_blocking=True)
            torch.cuda.synchronize()
        return hr, lr


def check_batch(hr, lr):
    assert hr.shape == (BATCH, 3, HR_PATCH, HR_PATCH) and lr.shape == (BATCH, 3, LR_PATCH, LR_PATCH)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="training pairs from files: 16 x 128^2 HR, x4, k33, noise")
def test_pairs_from_files_on_the_fly_ours(benchmark, data, device):
    dataset, deg = HRCropDataset(data / "hr", patch=HR_PATCH), degrader(data, device)
    check_batch(*benchmark.pedantic(on_the_fly_batch, args=(dataset, deg, device), **ROUNDS))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="training pairs from files: 16 x 128^2 HR, x4, k33, noise")
def test_pairs_from_files_offline(benchmark, data, device):
    check_batch(*benchmark.pedantic(OfflinePairs(data, cache=False).batch, args=(device,), **ROUNDS))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="training pairs in memory: 16 x 128^2 HR, x4, k33, noise")
def test_pairs_in_memory_on_the_fly_ours(benchmark, data, device):
    dataset, deg = HRCropDataset(data / "hr", patch=HR_PATCH, cache=True), degrader(data, device)
    check_batch(*benchmark.pedantic(on_the_fly_batch, args=(dataset, deg, device), **ROUNDS))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="training pairs in memory: 16 x 128^2 HR, x4, k33, noise")
def test_pairs_in_memory_offline(benchmark, data, device):
    check_batch(*benchmark.pedantic(OfflinePairs(data, cache=True).batch, args=(device,), **ROUNDS))
