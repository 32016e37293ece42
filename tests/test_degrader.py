"""The on-the-fly path: uint8 HR crops (HRCropDataset) and the Degrader, against numpy and the offline files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch.utils.data import DataLoader

from realsr_fast.data.crops import HRCropDataset
from realsr_fast.data.degrader import DegradeChoices, Degrader
from realsr_fast.data.imresize import imresize
from realsr_fast.data.kernel_bank import load_kernel_bank
from realsr_fast.data.paired import build_paired_dataset
from realsr_fast.data.paired_settings import PairedSettings
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image, write_image


def random_bank(rng, count: int, size: int) -> torch.Tensor:
    kernels = rng.random((count, size, size)) ** 4
    return torch.from_numpy(kernels / kernels.sum(axis=(1, 2), keepdims=True)).float()


def numpy_degrade(hr: np.ndarray, kernel: np.ndarray, scale: int, noise: np.ndarray | None) -> np.ndarray:
    """docs/METHOD.md §3 and §5 in numpy: `hr` (C, H, W) in [0, 1], `noise` (C, h, w) crop in
    [0, 1] or None -> (C, h, w) LR = clamp(correlate 'reflect', every s-th pixel, + crop - its mean)."""
    lr = np.stack([scipy.ndimage.correlate(channel, kernel, mode="reflect")[::scale, ::scale] for channel in hr])
    if noise is not None:
        lr = lr + noise - noise.mean(axis=(1, 2), keepdims=True)
    return np.clip(lr, 0, 1)


def test_kernel_and_noise_per_sample_match_numpy(rng):
    kernels = random_bank(rng, 5, 13)
    noise = torch.from_numpy(rng.integers(0, 256, (4, 3, 40, 36), dtype=np.uint8))
    hr = torch.from_numpy(rng.integers(0, 256, (6, 3, 64, 56), dtype=np.uint8))
    degrader = Degrader(kernels, noise, scale=4, recipe="kernel+noise", generator=torch.Generator().manual_seed(1))
    lr, choices = degrader.forward_with_choices(hr)
    assert lr.shape == (6, 3, 16, 14) and lr.dtype == torch.float32
    assert len(set(choices.kernel_index.tolist())) > 1 and len(set(choices.noise_offset[:, 1].tolist())) > 1
    for b in range(6):
        oy, ox = choices.noise_offset[b].tolist()
        crop = noise[choices.noise_index[b], :, oy:oy + 16, ox:ox + 14].double().numpy() / 255
        want = numpy_degrade(hr[b].double().numpy() / 255, kernels[choices.kernel_index[b]].double().numpy(), 4, crop)
        np.testing.assert_allclose(lr[b].numpy(), want, atol=2e-6)


def test_choices_are_seeded(rng):
    kernels = random_bank(rng, 8, 9)
    noise = torch.from_numpy(rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8))
    hr = torch.from_numpy(rng.integers(0, 256, (4, 3, 64, 64), dtype=np.uint8))

    def run(seed: int):
        degrader = Degrader(kernels, noise, scale=4, generator=torch.Generator().manual_seed(seed))
        return degrader.forward_with_choices(hr)

    (a, ca), (b, cb), (c, _) = run(7), run(7), run(8)
    assert torch.equal(a, b) and torch.equal(ca.noise_offset, cb.noise_offset)
    assert not torch.equal(a, c)


def test_bicubic_recipes_are_imresize_plus_noise(rng):
    hr = torch.from_numpy(rng.integers(0, 256, (2, 3, 48, 40), dtype=np.uint8))
    lr = Degrader(recipe="bicubic", scale=4)(hr)
    torch.testing.assert_close(lr, imresize(hr, 0.25).clamp(0, 1), rtol=0, atol=2e-6)
    noise = torch.from_numpy(rng.integers(0, 256, (3, 3, 20, 20), dtype=np.uint8))
    noisy, choices = Degrader(noise_bank=noise, recipe="bicubic+noise", scale=4).forward_with_choices(hr)
    for b in range(2):
        oy, ox = choices.noise_offset[b].tolist()
        crop = noise[choices.noise_index[b], :, oy:oy + 12, ox:ox + 10].double() / 255
        want = (imresize(hr[b].double() / 255, 0.25) + crop - crop.mean(dim=(1, 2), keepdim=True)).clamp(0, 1)
        torch.testing.assert_close(noisy[b].double(), want, rtol=0, atol=2e-6)


def test_banks_are_non_persistent_buffers(rng):
    degrader = Degrader(random_bank(rng, 3, 9), torch.zeros(2, 3, 16, 16, dtype=torch.uint8), scale=2)
    assert dict(degrader.named_buffers()).keys() == {"kernels", "noise"}
    assert degrader.state_dict() == {}
    assert "recipe='kernel+noise'" in repr(degrader)


def test_bad_setups_raise(rng):
    kernels = random_bank(rng, 3, 9)
    with pytest.raises(RealSRError, match="unknown degradation recipe"):
        Degrader(kernels, recipe="gaussian")
    with pytest.raises(RealSRError, match="needs a non-empty \\(N, k, k\\) kernel bank"):
        Degrader(None, recipe="kernel")
    with pytest.raises(RealSRError, match="needs a non-empty \\(M, 3, P, P\\) noise bank"):
        Degrader(kernels, None, recipe="kernel+noise")
    small = Degrader(kernels, torch.zeros(2, 3, 16, 16, dtype=torch.uint8), scale=4)
    with pytest.raises(RealSRError, match="noise patches \\(16x16\\) are smaller than the LR \\(32x32\\)"):
        small(torch.zeros(1, 3, 128, 128, dtype=torch.uint8))


@pytest.fixture
def offline(tmp_path, rng) -> tuple[Path, Path]:
    hr_dir, kernel_dir = tmp_path / "hr", tmp_path / "kernels"
    for i in range(4):
        write_image(hr_dir / f"im{i}.png", rng.integers(0, 256, (64 + 8 * i, 72, 3), dtype=np.uint8))
    kernel_dir.mkdir()
    for i in range(3):
        np.save(kernel_dir / f"k{i}_kernel_x4.npy", rng.random((33, 33)) ** 3)
    build_paired_dataset(hr_dir, tmp_path / "pairs", PairedSettings(kernels=kernel_dir, seed=2), progress=False)
    return tmp_path / "pairs", kernel_dir


def test_offline_files_equal_the_on_the_fly_path_for_the_same_choices(offline):
    pairs, kernel_dir = offline
    degrader = Degrader(load_kernel_bank(kernel_dir, 4), scale=4, recipe="kernel")
    for pair in json.loads((pairs / "manifest.json").read_text())["pairs"]:
        hr = torch.from_numpy(read_image(pairs / pair["hr"]).copy()).permute(2, 0, 1)[None]
        choices = DegradeChoices(torch.tensor([pair["kernel_index"]]))
        on_the_fly = degrader.apply(hr, choices)  # float, as in training
        lr_file = torch.from_numpy(read_image(pairs / pair["lr"]).copy()).permute(2, 0, 1)[None]
        assert torch.equal(torch.round(on_the_fly * 255).to(torch.uint8), lr_file)
        # A training crop aligned to the scale gives the file's LR away from the crop's border.
        crop = hr[..., 16:16 + 48, 8:8 + 48]
        inner = degrader.apply(crop, choices, out_dtype=torch.uint8)[..., 4:-4, 4:-4]
        assert torch.equal(inner, lr_file[..., 4 + 4:4 + 8, 2 + 4:2 + 8])


def is_dihedral_window(crop: np.ndarray, image: np.ndarray) -> tuple[bool, int]:
    """Whether `crop` (P, P, 3) is one of the 8 flips/rotations of a P x P window of `image`; which one."""
    p = crop.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(image, (p, p, 3))[:, :, 0]
    variants = [crop, crop[:, ::-1], crop[::-1], crop[::-1, ::-1]]
    variants += [v.transpose(1, 0, 2) for v in variants]
    for number, variant in enumerate(variants):
        if (windows == variant).all(axis=(2, 3, 4)).any():
            return True, number
    return False, -1


def test_crops_are_flipped_rotated_windows_and_cover_all_eight(rng):
    image = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    dataset = HRCropDataset([image], patch=16, repeat=64)
    torch.manual_seed(0)
    seen = set()
    for i in range(len(dataset)):
        crop = dataset[i]
        assert crop.shape == (3, 16, 16) and crop.dtype == torch.uint8 and crop.is_contiguous()
        found, number = is_dihedral_window(crop.permute(1, 2, 0).numpy(), image)
        assert found
        seen.add(number)
    assert len(seen) == 8
    plain = HRCropDataset([image], patch=16, augment=False)
    assert is_dihedral_window(plain[0].permute(1, 2, 0).numpy(), image) == (True, 0)


def test_files_and_cache_give_the_same_crops_and_loader_batches_are_seeded(tmp_path, rng):
    for i in range(5):
        write_image(tmp_path / f"im{i}.png", rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8))
    write_image(tmp_path / "tiny.png", rng.integers(0, 256, (10, 48, 3), dtype=np.uint8))
    with pytest.warns(UserWarning, match="tiny.png"):
        from_files = HRCropDataset(tmp_path, patch=32)
    with pytest.warns(UserWarning):
        cached = HRCropDataset(tmp_path, patch=32, cache=True)
    assert len(from_files) == len(cached) == 5

    def batches(dataset, workers):
        torch.manual_seed(0)  # crops drawn in the main process (workers=0) use the global generator
        loader = DataLoader(dataset, batch_size=2, shuffle=True, num_workers=workers, drop_last=True,
                            generator=torch.Generator().manual_seed(4))
        return list(loader)

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b))

    first = batches(from_files, 0)
    assert len(first) == 2 and first[0].shape == (2, 3, 32, 32) and first[0].dtype == torch.uint8
    assert same(first, batches(cached, 0))
    in_workers = batches(from_files, 2)
    assert same(in_workers, batches(cached, 2)) and not same(in_workers, first)


def test_no_usable_image_is_an_error(tmp_path, rng):
    write_image(tmp_path / "tiny.png", rng.integers(0, 256, (10, 10, 3), dtype=np.uint8))
    with pytest.warns(UserWarning), pytest.raises(RealSRError, match="no HR image of at least 128x128"):
        HRCropDataset(tmp_path)
    with pytest.raises(RealSRError, match="no such folder"):
        HRCropDataset(tmp_path / "missing")


@pytest.mark.cuda
def test_cuda_matches_cpu(rng):
    kernels = random_bank(rng, 6, 33)
    noise = torch.from_numpy(rng.integers(0, 256, (5, 3, 64, 64), dtype=np.uint8))
    hr = torch.from_numpy(rng.integers(0, 256, (16, 3, 128, 128), dtype=np.uint8))
    cpu = Degrader(kernels, noise, scale=4, generator=torch.Generator().manual_seed(3))
    gpu = Degrader(kernels, noise, scale=4, generator=torch.Generator().manual_seed(3)).to("cuda")
    lr_cpu = cpu(hr)
    lr_gpu = gpu(hr.cuda())
    assert lr_gpu.device.type == "cuda"
    torch.testing.assert_close(lr_gpu.cpu(), lr_cpu, rtol=0, atol=1e-5)
