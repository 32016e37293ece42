"""The official RealSR data rules, pinned exactly (issue 29, point 5), each against a numpy reference
written from the official code:

- augmentation, Real-SR `codes/data/util.py` `augment` (the ESRGAN/BasicSR rule): three independent
  coin flips, then on `(H, W, C)` arrays in this order `hflip: img[:, ::-1]`, `vflip: img[::-1]`,
  `rot90: img.transpose(1, 0, 2)`; every one of the 8 combinations, HR and LR given the same one;
- noise mining, Real-SR `codes/preprocess/collect_noise.py` `noise_patch`: a patch of the PIL 'L'
  grey is kept when `np.var(patch) < max_var and np.mean(patch) > min_mean` (both strict): a patch
  exactly at a threshold is rejected, one a float32 step inside it is kept.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from realsr_fast.data.crops import augmented_chw
from realsr_fast.data.degrader import Degrader
from realsr_fast.data.noise_mining import NOISE_TRACKS, find_noise_patches
from realsr_fast.data.paired_reader import PairedCropDataset
from realsr_fast.data.training_pairs import PairMaker, _flip_pairs
from realsr_fast.io import write_image

COMBINATIONS = list(itertools.product((False, True), repeat=3))
"""(hflip, vflip, rot90) of the official `augment`."""


def official_augment(image: np.ndarray, hflip: bool, vflip: bool, rot90: bool) -> np.ndarray:
    """Real-SR's `augment` on one `(H, W, C)` array, in its order."""
    if hflip:
        image = image[:, ::-1, :]
    if vflip:
        image = image[::-1, :, :]
    if rot90:
        image = image.transpose(1, 0, 2)
    return image


def official_chw(chw: torch.Tensor, flags) -> torch.Tensor:
    """`official_augment` of a `(C, H, W)` tensor, as a `(C, H', W')` tensor."""
    hwc = chw.permute(1, 2, 0).numpy()
    return torch.from_numpy(np.ascontiguousarray(official_augment(hwc, *flags).transpose(2, 0, 1)))


def test_the_eight_combinations_are_eight_orientations(rng):
    """The reference itself: on random content the 8 flag combinations give 8 different images (so a
    test that finds the right one for each draw tells them all apart)."""
    image = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    assert len({official_augment(image, *flags).tobytes() for flags in COMBINATIONS}) == 8


def test_augmented_chw_gives_hr_and_lr_the_official_orientation_of_each_draw(rng):
    """`augmented_chw` (HR crops, paired crops): its three draws from torch's RNG are (hflip, vflip,
    rot90), each True below 1/2; for every draw both crops get exactly `augment`'s result. The crops
    are not square, so a transpose is told from a rotation by the shape too."""
    hr = rng.integers(0, 256, (12, 8, 3), dtype=np.uint8)
    lr = rng.integers(0, 256, (3, 2, 3), dtype=np.uint8)
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        flags = tuple(torch.rand(3).lt(0.5).tolist())
        torch.manual_seed(seed)
        got_hr, got_lr = augmented_chw([hr, lr], True)
        for got, image in ((got_hr, hr), (got_lr, lr)):
            want = np.ascontiguousarray(official_augment(image, *flags).transpose(2, 0, 1))
            assert got.shape == want.shape and np.array_equal(got.numpy(), want), (flags, image.shape)
        seen.add(flags)
    assert seen == set(COMBINATIONS)
    plain = augmented_chw([hr], False)[0]
    assert np.array_equal(plain.numpy(), hr.transpose(2, 0, 1))


def test_flip_pairs_applies_each_combination_to_hr_and_lr_alike(rng):
    """`_flip_pairs` (the on-the-fly training pairs), one sample per combination: rows of `flips` are
    (hflip, vflip, rot90)."""
    hr = torch.from_numpy(rng.integers(0, 256, (8, 3, 8, 8), dtype=np.uint8))
    lr = torch.from_numpy(rng.integers(0, 256, (8, 3, 2, 2), dtype=np.uint8))
    flips = torch.tensor(COMBINATIONS).T  # (3, 8)
    got_hr, got_lr = _flip_pairs(hr, lr, flips)
    for b, flags in enumerate(COMBINATIONS):
        assert torch.equal(got_hr[b], official_chw(hr[b], flags)), flags
        assert torch.equal(got_lr[b], official_chw(lr[b], flags)), flags


def test_pair_maker_draws_the_combination_and_orients_hr_and_lr_together(rng):
    """PairMaker end to end: each sample's (hflip, vflip, rot90) are its column of the generator's
    `randint(2, (3, B))` (no other draw before it with per-image kernels and no noise), and its HR and
    LR are the unaugmented pair's, oriented by `augment`; all 8 combinations occur."""
    batch, scale = 48, 2
    kernels = rng.random((3, 5, 5))
    kernels = torch.from_numpy(kernels / kernels.sum(axis=(1, 2), keepdims=True)).float()
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    degrader = Degrader(kernels, scale=scale, recipe="kernel", generator=generator)
    maker = PairMaker(degrader, "per_image", image_count=3, seed=1)
    plain_maker = PairMaker(degrader, "per_image", image_count=3, seed=1, augment=False)
    side = 8 + 2 * maker.context
    crops = torch.from_numpy(rng.integers(0, 256, (batch, 3, side, side), dtype=np.uint8))
    index = torch.from_numpy(rng.integers(0, 3, batch))
    plain_hr, plain_lr = plain_maker(crops, index)
    state = generator.get_state()
    hr, lr = maker(crops, index)
    flips = torch.randint(2, (3, batch), generator=torch.Generator().set_state(state)).bool()
    seen = set()
    for b in range(batch):
        orientations = {official_chw(plain_lr[b], flags).numpy().tobytes() for flags in COMBINATIONS}
        assert len(orientations) == 8  # the LR tells every orientation apart (not saturated, not symmetric)
        flags = tuple(flips[:, b].tolist())
        assert torch.equal(hr[b], official_chw(plain_hr[b], flags)), (b, flags)
        assert torch.equal(lr[b], official_chw(plain_lr[b], flags)), (b, flags)
        seen.add(flags)
    assert seen == set(COMBINATIONS)


def test_paired_reader_orients_hr_and_lr_together(tmp_path, rng):
    """PairedCropDataset (offline pairs): the same crop with and without augmentation differ by one official
    combination, the same for HR and LR; all 8 occur."""
    scale, patch = 4, 8
    lr = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (6 * scale, 7 * scale, 3), dtype=np.uint8)
    write_image(tmp_path / "hr.png", hr)
    write_image(tmp_path / "lr.png", lr)
    pairs = [(tmp_path / "hr.png", tmp_path / "lr.png")]
    augmented, plain = PairedCropDataset(pairs, patch, scale), PairedCropDataset(pairs, patch, scale, augment=False)
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        plain_hr, plain_lr = plain[0]
        torch.manual_seed(seed)  # the same crop position; augmentation draws after it
        got_hr, got_lr = augmented[0]
        matches = [flags for flags in COMBINATIONS if torch.equal(got_hr, official_chw(plain_hr, flags))]
        assert len(matches) == 1, matches
        assert torch.equal(got_lr, official_chw(plain_lr, matches[0])), matches[0]
        seen.add(matches[0])
    assert seen == set(COMBINATIONS)


# --- noise mining --------------------------------------------------------------------------------

# 16 deviations from the mean with sum 0 and sum of squares 320: a 4x4 patch of variance exactly 20.
DEVIATIONS_VAR_20 = np.array([8, -8, 6, -6, 6, -6, 4, -4, 2, -2, 2, -2, 0, 0, 0, 0])


def grey_patch(rng, mean: int, deviations: np.ndarray) -> np.ndarray:
    """A `(4, 4, 3)` grey uint8 patch (R = G = B, so PIL 'L' is the value itself) with the deviations
    in a fresh random order around `mean`."""
    values = mean + rng.permutation(deviations).reshape(4, 4)
    return np.repeat(values[..., None], 3, axis=2).astype(np.uint8)


def official_kept(image: np.ndarray, patch: int, max_var: float, min_mean: float) -> list[tuple[int, int]]:
    """Real-SR's rule on every full patch at steps of `patch` (grey patches: 'L' is one channel)."""
    grey = image[..., 0].astype(np.float64)
    kept = []
    for y in range(0, grey.shape[0] - patch + 1, patch):
        for x in range(0, grey.shape[1] - patch + 1, patch):
            block = grey[y:y + patch, x:x + patch]
            if np.var(block) < max_var and np.mean(block) > min_mean:
                kept.append((y, x))
    return kept


def float32_step(value: float, direction: float) -> float:
    """The float32 next to `value` towards `direction` (the statistics are float32)."""
    return float(np.nextafter(np.float32(value), np.float32(direction)))


@pytest.fixture
def boundary_photo(rng) -> np.ndarray:
    """A 2x3 grid of 4x4 grey patches: variance exactly 20 (mean 120); mean exactly 50 (variance 0,
    and variance 16); flat black (mean 0); and two plainly kept ones (variance 1 and 4.5, bright)."""
    patches = [
        grey_patch(rng, 120, DEVIATIONS_VAR_20),
        grey_patch(rng, 50, np.zeros(16, int)),
        grey_patch(rng, 50, np.repeat([4, -4], 8)),
        grey_patch(rng, 0, np.zeros(16, int)),
        grey_patch(rng, 90, np.repeat([1, -1], 8)),
        grey_patch(rng, 200, np.array([3, -3] * 4 + [0] * 8)),
    ]
    rows = [np.concatenate(patches[:3], axis=1), np.concatenate(patches[3:], axis=1)]
    return np.concatenate(rows, axis=0)


def kept_at(photo: np.ndarray, max_var: float, min_mean: float) -> list[tuple[int, int]]:
    settings = dataclasses.replace(NOISE_TRACKS["dped"], patch=4, stride=4, max_var=max_var, min_mean=min_mean)
    return [(p.y, p.x) for p in find_noise_patches(photo, settings).kept]


def test_the_boundary_patches_have_exactly_the_threshold_statistics(boundary_photo):
    result = find_noise_patches(boundary_photo, dataclasses.replace(NOISE_TRACKS["df2k"], patch=4, stride=4))
    assert result.variances.tolist() == [20.0, 0.0, 16.0, 0.0, 1.0, 4.5]
    assert result.means.tolist() == [120.0, 50.0, 50.0, 0.0, 90.0, 200.0]


@pytest.mark.parametrize("track", ["df2k", "dped"])
def test_official_thresholds_reject_patches_exactly_at_them(boundary_photo, track):
    """Real-SR's own thresholds (variance 20; mean 0 or 50): the variance-20 patch is not kept, nor the
    mean-50 ones on DPED, nor the black one (mean 0) on either track."""
    settings = NOISE_TRACKS[track]
    kept = kept_at(boundary_photo, settings.max_var, settings.min_mean)
    assert kept == official_kept(boundary_photo, 4, settings.max_var, settings.min_mean)
    assert (0, 0) not in kept and (4, 0) not in kept
    assert ((0, 4) in kept, (0, 8) in kept) == ((True, True) if track == "df2k" else (False, False))
    assert (4, 4) in kept and (4, 8) in kept


def test_variance_threshold_is_strict(boundary_photo):
    """`variance < max_var`: at 20 the variance-20 patch is rejected, a float32 step above it is kept;
    the variance-16 patch likewise at 16."""
    assert (0, 0) not in kept_at(boundary_photo, 20.0, 0.0)
    assert (0, 0) in kept_at(boundary_photo, float32_step(20.0, np.inf), 0.0)
    assert (0, 8) not in kept_at(boundary_photo, 16.0, 0.0)
    assert (0, 8) in kept_at(boundary_photo, float32_step(16.0, np.inf), 0.0)
    for max_var in (16.0, 20.0, float32_step(20.0, np.inf)):
        assert kept_at(boundary_photo, max_var, 0.0) == official_kept(boundary_photo, 4, max_var, 0.0)


def test_mean_threshold_is_strict(boundary_photo):
    """`mean > min_mean`: at 50 the mean-50 patches are rejected, a float32 step below it they are kept;
    at 0 the black patch is rejected, a float32 step below 0 it is kept."""
    assert {(0, 4), (0, 8)} & set(kept_at(boundary_photo, 20.0, 50.0)) == set()
    assert {(0, 4), (0, 8)} <= set(kept_at(boundary_photo, 20.0, float32_step(50.0, -np.inf)))
    assert (4, 0) not in kept_at(boundary_photo, 20.0, 0.0)
    assert (4, 0) in kept_at(boundary_photo, 20.0, float32_step(0.0, -np.inf))
    for min_mean in (0.0, 50.0, float32_step(50.0, -np.inf)):
        assert kept_at(boundary_photo, 20.0, min_mean) == official_kept(boundary_photo, 4, 20.0, min_mean)
