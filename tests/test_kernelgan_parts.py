"""KernelGAN pieces against the official formulas, written out here with numpy/scipy."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.kernel_estimation.gaussians import anisotropic_gaussian
from realsr_fast.kernel_estimation.kernelgan import constraints as C
from realsr_fast.kernel_estimation.kernelgan.crops import MIN_IMAGE_SIDE, box_sum_same, crop_corners, prepare_image
from realsr_fast.kernel_estimation.postprocess import analytic_x4, post_process, zeroize_negligible
from realsr_fast.kernel_estimation.quality import kernel_report, most_consistent

# Corner and centre values of the official loss.py bicubic_k.
OFFICIAL_BICUBIC = {(0, 0): 0.0001373291015625, (0, 3): -0.0050811767578125, (2, 2): 0.0128326416015625,
                    (3, 3): 0.1880035400390630, (1, 3): -0.0152435302734375, (3, 2): 0.0491180419921875}


def test_bicubic_loss_kernel_matches_official_values():
    k = C.bicubic_loss_kernel().double()
    assert k.shape == (8, 8)
    for (r, c), value in OFFICIAL_BICUBIC.items():
        assert k[r, c].item() == pytest.approx(value, abs=1e-9)
        assert k[7 - r, 7 - c].item() == pytest.approx(value, abs=1e-9)
    assert k.sum().item() == pytest.approx(1.0)


def test_bicubic_target_is_official_padded_ungrouped_conv_then_shave():
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    k = C.bicubic_loss_kernel()
    # official: k.expand(3, 3, 8, 8), padding 3, stride 2, then shave_a2b 32 -> 26 ([3:29]).
    full = torch.nn.functional.conv2d(x, k.expand(3, 3, 8, 8), stride=2, padding=3)[..., 3:29, 3:29]
    target = C.bicubic_target(x)
    torch.testing.assert_close(target.expand(-1, 3, -1, -1), full, rtol=1e-5, atol=1e-5)


def test_kernel_constraints_match_numpy():
    rng = np.random.default_rng(1)
    k = rng.normal(0.01, 0.02, size=(2, 13, 13))
    out = C.kernel_constraints(torch.from_numpy(k), C.penalty_mask().double())
    # official create_penalty_mask(13, 30)
    z = np.arange(-6, 7)
    g = np.exp(-(z**2) / (2 * 13.0**2)) / np.sqrt(2 * np.pi * 13.0**2)
    mask = 1 - np.outer(g, g) / np.outer(g, g).max()
    mask[2:-2, 2:-2] = 0
    mask *= 30
    for i in range(2):
        s = k[i].sum()
        rows, cols = k[i].sum(1) @ np.arange(13) / s, k[i].sum(0) @ np.arange(13) / s
        assert out["sum2one"][i].item() == pytest.approx(abs(1 - s))
        assert out["boundaries"][i].item() == pytest.approx(np.abs(k[i] * mask).mean())
        assert out["centralized"][i].item() == pytest.approx(((rows - 6.5) ** 2 + (cols - 6.5) ** 2) / 2)
        assert out["sparse"][i].item() == pytest.approx((np.abs(k[i]) ** 0.2).mean())


class _OfficialLearner:
    """sefibk/KernelGAN learner.py, transcribed."""

    def __init__(self):
        self.counter, self.similar, self.insert = 0, False, True
        self.lambda_bicubic, self.lambda_centralized, self.lambda_sparse = 5.0, 0.0, 0.0

    def update(self, iteration, loss):
        if iteration == 0:
            return
        if not self.similar:
            if loss < 0.4:
                if self.counter >= 2:
                    self.similar = True
                else:
                    self.counter += 1
            else:
                self.counter = 0
        elif iteration % 200 == 0 and self.lambda_bicubic > 5e-6:
            self.lambda_bicubic = max(self.lambda_bicubic / 100.0, 5e-6)
            if self.insert and self.lambda_bicubic < 5e-3:
                self.lambda_centralized, self.lambda_sparse, self.insert = 1, 5, False


def test_schedule_follows_official_learner_per_image():
    rng = np.random.default_rng(2)
    n, iterations = 5, 1500
    # losses hovering around the 0.4 threshold, each image switching at a different time
    # above the 0.4 threshold until iteration 150 * i, then hovering around it
    late = np.arange(iterations)[:, None] >= 150 * np.arange(n)[None]
    losses = np.where(late, rng.uniform(0.2, 0.5, size=(iterations, n)), rng.uniform(0.45, 0.6, size=(iterations, n)))
    schedule = C.ConstraintSchedule.start(n, "cpu")
    learners = [_OfficialLearner() for _ in range(n)]
    differed = False
    for it in range(iterations):
        schedule.update(it, torch.from_numpy(losses[it]).float())
        for i, learner in enumerate(learners):
            learner.update(it, np.float32(losses[it, i]))
        for i, learner in enumerate(learners):
            assert schedule.lambda_bicubic[i].item() == pytest.approx(learner.lambda_bicubic, rel=1e-12)
            assert schedule.lambda_sparse[i].item() == learner.lambda_sparse
            assert schedule.lambda_centralized[i].item() == learner.lambda_centralized
        differed |= len({learner.lambda_bicubic for learner in learners}) > 1
    assert differed  # the images really did follow different schedules


def test_learning_rate_drops_after_official_iterations():
    assert C.learning_rate(0) == C.learning_rate(750) == 2e-4
    assert C.learning_rate(751) == pytest.approx(2e-5)
    assert C.learning_rate(2999) == pytest.approx(2e-7)


@pytest.mark.parametrize("size", [5, 13, 32])
def test_box_sum_same_matches_scipy_convolve2d(size):
    im = np.random.default_rng(size).random((70, 90))
    expected = scipy.signal.convolve2d(im, np.ones((size, size)), "same")
    np.testing.assert_allclose(box_sum_same(im, size), expected, rtol=1e-10, atol=1e-10)


def test_crop_corners_are_even_inside_and_seeded():
    image = (np.random.default_rng(3).random((150, 130, 3)) * 255).astype(np.uint8)
    im = prepare_image(image)
    assert im.shape == (130, 110, 3)
    g1, d1 = crop_corners(im, 200, np.random.default_rng(9))
    g2, d2 = crop_corners(im, 200, np.random.default_rng(9))
    np.testing.assert_array_equal(g1, g2)
    for corners, size in ((g1, 64), (d1, 26)):
        assert (corners % 2 == 0).all() and (corners >= 0).all()
        assert (corners[:, 0] + size <= 130).all() and (corners[:, 1] + size <= 110).all()
    assert len({tuple(c) for c in d1}) > 20


def test_too_small_image_names_the_minimum_size():
    with pytest.raises(RealSRError, match=f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}"):
        prepare_image(np.zeros((83, 200, 3), np.uint8))


def _official_post_process(k):
    """util.py post_process_k, with scipy's current names."""
    k_n_min = 0.75 * np.sort(k.flatten())[-41]
    filtered = np.clip(k - k_n_min, 0, 100)
    filtered = filtered / filtered.sum()
    com = scipy.ndimage.center_of_mass(filtered)
    shift = np.array(filtered.shape) // 2 + 0.5 * (2 - np.array(filtered.shape) % 2) - com
    padded = np.pad(filtered, int(np.ceil(np.max(np.abs(shift)))) + 1, "constant")
    return scipy.ndimage.shift(padded, shift)


def test_post_process_matches_official_and_centres_the_mass():
    raw = np.zeros((13, 13))
    raw[3:10, 4:11] = anisotropic_gaussian(np.random.default_rng(4), size=7)
    raw += np.random.default_rng(5).normal(0, 1e-3, raw.shape)
    result = post_process(raw)
    assert result.kernel.shape == (17, 17)
    np.testing.assert_allclose(result.kernel, _official_post_process(raw), atol=1e-12)
    np.testing.assert_allclose(scipy.ndimage.center_of_mass(result.kernel), (8.5, 8.5), atol=1e-3)
    assert result.kernel.sum() == pytest.approx(1, abs=1e-3)
    kept = zeroize_negligible(raw)
    assert kept.sum() == pytest.approx(1) and (kept[raw < 0.75 * np.sort(raw.ravel())[-41]] == 0).all()


def test_analytic_x4_is_convolution_with_dilated_self():
    k2 = post_process(np.pad(anisotropic_gaussian(np.random.default_rng(6)), 1)).kernel
    k4 = analytic_x4(k2)
    dilated = np.zeros((33, 33))
    dilated[::2, ::2] = k2
    full = scipy.signal.convolve2d(dilated, k2)  # 49x49 = the official big_k
    expected = full[8:-8, 8:-8] / full[8:-8, 8:-8].sum()
    assert k4.shape == (33, 33)
    np.testing.assert_allclose(k4, expected, atol=1e-14)
    np.testing.assert_allclose(scipy.ndimage.center_of_mass(k4), (17.5, 17.5), atol=2e-3)


def test_quality_flags():
    good = post_process(np.pad(anisotropic_gaussian(np.random.default_rng(7)), 1)).kernel
    report = kernel_report(good, (0.2, 0.1), constrained=True)
    assert report["flags"] == [] and report["sum"] == pytest.approx(1, abs=1e-3)
    assert report["anisotropy"] >= 1
    two_peaks = np.zeros((17, 17))
    two_peaks[8, 1], two_peaks[8, 15] = 0.5, 0.5
    flags = kernel_report(two_peaks, (2.0, 0.0), constrained=False)["flags"]
    assert {"multi-modal", "off-centre", "not converged", "too wide"} <= set(flags)
    best, spread = most_consistent([good, good * 0.9 + 0.1 * two_peaks, two_peaks])
    assert best == 1 and spread > 0
