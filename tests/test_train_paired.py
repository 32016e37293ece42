"""Training from an offline paired dataset (`data.paired`): checked folders, aligned crops, the
resumable stream, online zero-mean noise on the device, and a short end-to-end run with resume."""
from __future__ import annotations

import importlib.resources
import itertools
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from realsr_fast.data.paired import build_paired_dataset
from realsr_fast.data.paired_reader import PairedCropDataset, paired_files
from realsr_fast.data.paired_settings import PairedSettings
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image, write_image
from realsr_fast.models.formats import load_checkpoint
from realsr_fast.train.batches import SeededCrops, StreamSampler, crop_dataset, crop_stream, noise_adder, paired_validation_set
from realsr_fast.train.config import DataConfig, load_config
from realsr_fast.train.distributed import DistContext
from realsr_fast.train.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.yaml"
SAMPLES = Path(str(importlib.resources.files("realsr_fast").joinpath("samples")))
SCALE, PATCH = 4, 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """The four sample photos (128x128) as an x4 bicubic offline dataset with 4 noise patches of 24x24."""
    root = tmp_path_factory.mktemp("paired")
    rng = np.random.default_rng(3)
    noise_dir = root / "noise_src"
    for i in range(4):
        patch = np.clip(128 + rng.normal(0, 2 + 2 * i, (24, 24, 3)), 0, 255).round().astype(np.uint8)
        write_image(noise_dir / f"n{i}.png", patch)
    build_paired_dataset(SAMPLES, root / "pairs", PairedSettings(recipe="bicubic", noise=noise_dir, scale=SCALE), progress=False)
    return root / "pairs"


def _files(folder: Path, name: str) -> list[np.ndarray]:
    return [read_image(p) for p in sorted((folder / name).glob("*.png"))]


# -- folder checks ---------------------------------------------------------------------------------
def test_config_takes_paired_alone():
    config = load_config(SMOKE, ["data.paired=pairs", "data.hr=null", "data.kernels=null", "data.noise=null"])
    assert config.data.paired == "pairs" and config.data.hr is None
    with pytest.raises(RealSRError, match=r"data.paired and data.hr, data.kernels, data.noise are both set"):
        load_config(SMOKE, ["data.paired=pairs"])
    with pytest.raises(RealSRError, match="data.hr is not set.*data.paired=PATH"):
        load_config(None, [])


def test_paired_files_pairs_stems(dataset):
    pairs = paired_files(dataset, SCALE)
    assert [(h.parent.name, lo.parent.name) for h, lo in pairs] == [("HR", "LR")] * 4
    assert all(h.stem == lo.stem for h, lo in pairs)


@pytest.mark.parametrize("damage, message", [
    (lambda d: shutil.rmtree(d / "LR"), "not an offline dataset \\(no LR folder\\)"),
    (lambda d: (d / "LR" / "coffee.png").rename(d / "LR" / "other.png"), "in only one of HR/ and LR/"),
    (lambda d: write_image(d / "LR" / "coffee.png", np.zeros((31, 32, 3), np.uint8)), "must be exactly 1/4"),
    (lambda d: shutil.rmtree(d / "noise"), "has no noise/ folder"),
])
def test_broken_datasets_are_refused(dataset, tmp_path, damage, message):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    damage(broken)
    config = DataConfig(paired=str(broken))
    with pytest.raises(RealSRError, match=message):
        paired_files(broken, SCALE)
        noise_adder(config, None)


def test_wrong_scale_is_refused(dataset):
    with pytest.raises(RealSRError, match="must be exactly 1/2"):
        paired_files(dataset, 2)


# -- crops -----------------------------------------------------------------------------------------
def _flips(image: np.ndarray) -> dict[tuple[bool, bool, bool], np.ndarray]:
    """`(H, W, C)` -> every horizontal flip / vertical flip / transpose combination of it."""
    out = {}
    for hflip, vflip, transpose in itertools.product((False, True), repeat=3):
        x = image[:, ::-1] if hflip else image
        x = x[::-1] if vflip else x
        out[hflip, vflip, transpose] = x.transpose(1, 0, 2) if transpose else x
    return out


def _locate(hr: np.ndarray, lr: np.ndarray, hr_file: np.ndarray, lr_file: np.ndarray) -> set:
    """Every `(top, left, flips)` at which the LR crop comes from `lr_file` AND the HR crop from
    `hr_file` at scale x the LR position, with the same flips (brute force over all of them)."""
    p = lr.shape[0]
    found = set()
    for top in range(lr_file.shape[0] - p + 1):
        for left in range(lr_file.shape[1] - p + 1):
            lr_views = _flips(lr_file[top:top + p, left:left + p])
            hr_views = _flips(hr_file[SCALE * top:SCALE * (top + p), SCALE * left:SCALE * (left + p)])
            found |= {(top, left, f) for f in lr_views if np.array_equal(lr_views[f], lr) and np.array_equal(hr_views[f], hr)}
    return found


def test_crops_are_aligned_and_flipped_alike(dataset):
    hr_files, lr_files = _files(dataset, "HR"), _files(dataset, "LR")
    crops = SeededCrops(PairedCropDataset(paired_files(dataset, SCALE), PATCH, SCALE, cache=False))
    seen_flips, seen_positions = set(), set()
    for seed in range(12):
        index = seed % 4
        hr, lr = crops[index, seed]
        assert hr.dtype == lr.dtype == torch.uint8
        assert hr.shape == (3, PATCH, PATCH) and lr.shape == (3, PATCH // SCALE, PATCH // SCALE)
        hr, lr = hr.permute(1, 2, 0).numpy(), lr.permute(1, 2, 0).numpy()
        found = _locate(hr, lr, hr_files[index], lr_files[index])
        assert found, f"seed {seed}: the crops are not an aligned pair of image {index}"
        seen_flips |= {f for _, _, f in found}
        seen_positions |= {(top, left) for top, left, _ in found}
        hr_again, _ = crops[index, seed]
        assert np.array_equal(hr_again.permute(1, 2, 0).numpy(), hr)  # a function of the seed
    assert len(seen_flips) >= 4 and len(seen_positions) >= 6  # the draws vary


def test_stream_resumes_and_splits_over_ranks(dataset):
    crops = crop_dataset(DataConfig(paired=str(dataset), patch=PATCH), SCALE)

    def take(rank: int, world: int, start: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sampler = StreamSampler(len(crops), 10, rank, world, start)
        stream = iter(crop_stream(crops, sampler, 2, workers=0, pin_memory=False))
        return [next(stream) for _ in range(count)]

    whole = [pair for hr, lr in take(0, 1, 0, 6) for pair in zip(hr, lr)]  # 12 items
    assert all(hr.shape == (3, PATCH, PATCH) and lr.shape == (3, 8, 8) for hr, lr in whole)
    resumed = [pair for hr, lr in take(0, 1, 6, 3) for pair in zip(hr, lr)]  # from item 6 on
    ranks = [[pair for hr, lr in take(r, 2, 0, 3) for pair in zip(hr, lr)] for r in (0, 1)]
    for got, want in [(resumed, whole[6:]), (ranks[0], whole[0::2]), (ranks[1], whole[1::2])]:
        assert all(torch.equal(g[0], w[0]) and torch.equal(g[1], w[1]) for g, w in zip(got, want, strict=True))


# -- noise on the device ---------------------------------------------------------------------------
def test_noise_adder_adds_zero_mean_bank_crops(dataset):
    bank = np.stack(_files(dataset, "noise")).astype(np.float64) / 255  # (4, 24, 24, 3), the bank's order
    lr = torch.from_numpy(np.random.default_rng(0).integers(60, 196, (5, 3, 8, 8), dtype=np.uint8))
    adder = noise_adder(DataConfig(paired=str(dataset)), torch.Generator().manual_seed(1))
    out, choices = adder.forward_with_choices(lr)
    assert out.dtype == torch.float32 and out.shape == lr.shape
    for b in range(len(lr)):
        oy, ox = choices.noise_offset[b].tolist()
        crop = bank[int(choices.noise_index[b]), oy:oy + 8, ox:ox + 8].transpose(2, 0, 1)
        want = np.clip(lr[b].numpy() / 255 + crop - crop.mean(axis=(1, 2), keepdims=True), 0, 1)
        np.testing.assert_allclose(out[b].numpy(), want, atol=1e-6)
    added = out.double() - lr.double() / 255  # no clamping happens for these values
    assert added.mean(dim=(2, 3)).abs().max() < 1e-6 and added.std() > 1 / 255
    assert len(set(choices.noise_index.tolist())) > 1


def test_recipe_without_noise_passes_the_lr_through(dataset):
    lr = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8))
    adder = noise_adder(DataConfig(paired=str(dataset), recipe="bicubic"), torch.Generator().manual_seed(1))
    torch.testing.assert_close(adder(lr), lr.float() / 255, atol=1e-7, rtol=0)


def test_validation_pairs_are_centre_crops_of_the_files(dataset):
    pairs = paired_validation_set(str(dataset), SCALE, 2, 64, torch.device("cpu"))
    hr_file, lr_file = _files(dataset, "HR")[0], _files(dataset, "LR")[0]
    assert len(pairs) == 2 and pairs[0].hr.shape == (1, 3, 64, 64) and pairs[0].lr.shape == (1, 3, 16, 16)
    assert np.array_equal(pairs[0].hr[0].permute(1, 2, 0).numpy(), hr_file[32:96, 32:96])
    np.testing.assert_allclose(pairs[0].lr[0].permute(1, 2, 0).numpy(), lr_file[8:24, 8:24] / 255, atol=1e-7)


# -- end to end ------------------------------------------------------------------------------------
def _config(dataset: Path, out: Path, iterations: int):
    return load_config(SMOKE, [
        f"data.paired={dataset}", "data.hr=null", "data.kernels=null", "data.noise=null", f"val.hr={dataset}",
        f"optim.iterations={iterations}", "val.every=4", "optim.milestones=[2]", "loss.perceptual_weight=0",
        "generator.nf=8", "generator.gc=8", "discriminator.ndf=8", "data.batch=2", "run.tensorboard=false",
        "run.progress=false", "run.log_every=1", "run.checkpoint_every=2", f"run.out={out}"])


def test_smoke_training_from_paired_dataset_resumes_exactly(dataset, tmp_path):
    straight = Trainer(_config(dataset, tmp_path / "a", 4), DistContext()).train()
    assert straight.iteration == 4 and len(straight.history) == 4
    assert all(math.isfinite(v) for entry in straight.history for v in entry.values())
    assert {"pixel", "gan", "d"} <= set(straight.history[0])
    assert len(straight.validations) == 1 and math.isfinite(straight.validations[0]["psnr"])

    Trainer(_config(dataset, tmp_path / "b", 2), DistContext()).train()
    resumed_trainer = Trainer(_config(dataset, tmp_path / "b", 4), DistContext(), resume=tmp_path / "b")
    resumed = resumed_trainer.train()
    assert [e["pixel"] for e in resumed.history] == [e["pixel"] for e in straight.history[2:]]
    want, _ = load_checkpoint(straight.checkpoint.generator)
    assert all(torch.equal(v, want[k]) for k, v in resumed_trainer.generator.state_dict().items())
