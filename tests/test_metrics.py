"""PSNR / SSIM against scikit-image (and a literal BasicSR-style SSIM); LPIPS availability."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate
from skimage import color, data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from realsr_fast import metrics
from realsr_fast.download import ALEXNET
from realsr_fast.errors import RealSRError
from realsr_fast.metrics import lpips_distance, lpips_unavailable_reason, psnr, ssim


def noisy_pair(shape, seed, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    gt = rng.integers(0, peak + 1, shape).astype(dtype)
    noise = rng.normal(0, 0.06 * peak, shape)
    sr = np.clip(gt + noise, 0, peak).round().astype(dtype)
    return sr, gt


def real_pair():
    """A real photo and a blurred, noisy version of it, 8-bit RGB, odd non-square size."""
    gt = data.astronaut()[37:300, 11:250]
    blurred = correlate(gt.astype(np.float64), np.full((3, 3, 1), 1 / 9), mode="reflect")
    sr = np.clip(blurred + np.random.default_rng(1).normal(0, 4, gt.shape), 0, 255).round().astype(np.uint8)
    return sr, gt


def reference_y(image: np.ndarray) -> np.ndarray:
    """skimage's rgb2ycbcr takes [0, 1] RGB and gives Y on the 16..235 scale (BT.601)."""
    return color.rgb2ycbcr(image.astype(np.float64) / np.iinfo(image.dtype).max)[..., 0]


def crop(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border else image


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """skimage SSIM with the Wang et al. / MATLAB settings, data range 255.

    skimage filters the whole image with reflected borders and then averages only the pixels
    at least 5 from the edge, whose 11x11 windows never touch the padding: the same pixels
    and values as 'valid' filtering. So the match should be exact up to float rounding.
    """
    return structural_similarity(
        x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
        channel_axis=-1 if x.ndim == 3 else None,
    )


@pytest.mark.parametrize("shape, border", [((48, 61, 3), 0), ((48, 61, 3), 4), ((64, 64, 3), 2)])
def test_psnr_and_ssim_on_y_match_skimage(shape, border):
    sr, gt = noisy_pair(shape, seed=border + shape[1])
    y_sr, y_gt = crop(reference_y(sr), border), crop(reference_y(gt), border)
    expected_psnr = peak_signal_noise_ratio(y_gt, y_sr, data_range=255)
    assert psnr(sr, gt, crop_border=border) == pytest.approx(expected_psnr, abs=1e-10)
    assert ssim(sr, gt, crop_border=border) == pytest.approx(reference_ssim(y_sr, y_gt), abs=1e-10)


def test_rgb_variants_match_skimage_on_a_real_image():
    sr, gt = real_pair()
    rgb_sr, rgb_gt = crop(sr, 4).astype(np.float64), crop(gt, 4).astype(np.float64)
    expected_psnr = peak_signal_noise_ratio(rgb_gt, rgb_sr, data_range=255)
    assert psnr(sr, gt, crop_border=4, y_channel=False) == pytest.approx(expected_psnr, abs=1e-10)
    assert ssim(sr, gt, crop_border=4, y_channel=False) == pytest.approx(reference_ssim(rgb_sr, rgb_gt), abs=1e-10)
    y_sr, y_gt = crop(reference_y(sr), 4), crop(reference_y(gt), 4)
    assert psnr(sr, gt, crop_border=4) == pytest.approx(peak_signal_noise_ratio(y_gt, y_sr, data_range=255), abs=1e-10)
    assert ssim(sr, gt, crop_border=4) == pytest.approx(reference_ssim(y_sr, y_gt), abs=1e-10)
    # a sanity anchor on the scale of the numbers: mild blur + noise on a photo
    assert 25 < psnr(sr, gt, crop_border=4) < 40 and 0.6 < ssim(sr, gt, crop_border=4) < 0.99


def test_ssim_literal_valid_filtering():
    """BasicSR's _ssim written out with scipy: Gaussian window outer product, 'valid' region."""
    sr, gt = noisy_pair((40, 33, 1), seed=5)
    x, y = sr[..., 0].astype(np.float64), gt[..., 0].astype(np.float64)
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()

    def filt(v):
        return correlate(v, window, mode="constant")[5:-5, 5:-5]

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    expected = np.mean(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2)))
    assert ssim(sr, gt) == pytest.approx(expected, abs=1e-12)


def test_grey_uses_the_grey_level_and_alpha_is_ignored():
    sr, gt = noisy_pair((30, 30, 1), seed=7)
    x, y = sr[..., 0].astype(np.float64), gt[..., 0].astype(np.float64)
    assert psnr(sr, gt) == pytest.approx(peak_signal_noise_ratio(y, x, data_range=255), abs=1e-10)
    rgb_sr, rgb_gt = noisy_pair((30, 30, 3), seed=8)
    alpha = np.random.default_rng(9).integers(0, 256, (30, 30, 1), dtype=np.uint8)
    with_alpha = np.concatenate([rgb_sr, alpha], axis=2)
    assert psnr(with_alpha, rgb_gt) == psnr(rgb_sr, rgb_gt)
    assert ssim(with_alpha, rgb_gt, y_channel=False) == ssim(rgb_sr, rgb_gt, y_channel=False)


def test_uint16_and_float_tensors_are_on_the_same_scale():
    sr, gt = noisy_pair((32, 40, 3), seed=10, dtype=np.uint16)
    expected_psnr = peak_signal_noise_ratio(reference_y(gt), reference_y(sr), data_range=255)
    assert psnr(sr, gt) == pytest.approx(expected_psnr, abs=1e-9)
    as_tensor = [torch.from_numpy(v.astype(np.float64) / 65535).permute(2, 0, 1) for v in (sr, gt)]
    assert psnr(as_tensor[0][None], as_tensor[1]) == pytest.approx(expected_psnr, abs=1e-9)
    assert ssim(*as_tensor, crop_border=3) == pytest.approx(ssim(sr, gt, crop_border=3), abs=1e-12)


def test_identical_images_and_bad_input():
    _, gt = noisy_pair((20, 20, 3), seed=11)
    assert psnr(gt, gt) == float("inf")
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(RealSRError, match="differ in size"):
        psnr(gt, gt[:-1])
    with pytest.raises(RealSRError, match="at least 11x11"):
        ssim(gt, gt, crop_border=5)
    with pytest.raises(RealSRError, match="leaves nothing"):
        psnr(gt, gt, crop_border=10)
    with pytest.raises(RealSRError, match="uint8/uint16"):
        psnr(gt.astype(np.float32), gt)


def test_lpips_unavailable_gives_none_and_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reason = lpips_unavailable_reason()
    assert reason is not None and "\n" not in reason and reason.startswith("LPIPS skipped")
    _, gt = noisy_pair((20, 20, 3), seed=12)
    assert lpips_distance(gt, gt) is None


def test_lpips_feeds_the_network_minus_one_to_one(monkeypatch, tmp_path):
    """With a stand-in `lpips` package and a weights file present, inputs reach the net in [-1, 1]."""
    seen = []

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net, verbose):
            super().__init__()
            assert net == "alex"

        def forward(self, x, y):
            seen.append((x, y))
            return (x - y).abs().mean()

    fake = types.ModuleType("lpips")
    fake.LPIPS = FakeLPIPS
    fake.__spec__ = types.SimpleNamespace(name="lpips")
    monkeypatch.setitem(sys.modules, "lpips", fake)
    weights = ALEXNET.name
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / weights).write_bytes(b"stand-in")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    metrics._lpips_network.cache_clear()
    try:
        assert lpips_unavailable_reason() is None
        sr, gt = noisy_pair((16, 18, 1), seed=13)
        got = lpips_distance(sr, gt, crop_border=1, device="cpu")
    finally:
        metrics._lpips_network.cache_clear()
    x, y = seen[0]
    assert x.shape == (1, 3, 14, 16)
    expected_gt = torch.from_numpy(gt[1:-1, 1:-1, 0].astype(np.float32)) / 127.5 - 1
    torch.testing.assert_close(y[0, 2], expected_gt)
    assert got == pytest.approx(np.abs(sr[1:-1, 1:-1].astype(np.float64) - gt[1:-1, 1:-1]).mean() / 127.5, rel=1e-5)
