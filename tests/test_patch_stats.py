"""realsr_fast.ops.patch_stats against PIL's grey conversion and a numpy loop over the patches."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from realsr_fast import RealSRError, ops


def numpy_patch_stats(grey: np.ndarray, patch: int, stride: int):
    """The literal loop: every full patch, population variance in float64."""
    out_h = (grey.shape[0] - patch) // stride + 1
    out_w = (grey.shape[1] - patch) // stride + 1
    mean = np.empty((out_h, out_w))
    var = np.empty((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = grey[i * stride : i * stride + patch, j * stride : j * stride + patch]
            mean[i, j] = window.mean()
            var[i, j] = window.var()
    return mean, var


def pil_grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64)


@pytest.mark.parametrize("patch,stride", [(1, 1), (7, 3), (16, 16), (33, 8), (64, 5)])
def test_uint8_rgb_matches_pil_grey_loop(rng, patch, stride):
    images = rng.integers(0, 256, size=(2, 97, 131, 3), dtype=np.uint8)
    mean, var = ops.patch_stats(torch.from_numpy(images).permute(0, 3, 1, 2), patch, stride)
    for b in range(2):
        want_mean, want_var = numpy_patch_stats(pil_grey(images[b]), patch, stride)
        assert mean[b].shape == want_mean.shape
        np.testing.assert_allclose(mean[b].numpy(), want_mean, rtol=1e-6)
        np.testing.assert_allclose(var[b].numpy(), want_var, rtol=1e-6, atol=1e-6)


def test_last_row_and_column_of_patches_are_included(rng):
    image = rng.integers(0, 256, size=(1, 3, 512, 768), dtype=np.uint8)
    mean, _ = ops.patch_stats(torch.from_numpy(image), 256, 256)
    assert mean.shape == (1, 2, 3)


def test_bright_flat_patch_variance_is_exact():
    # 250 everywhere with a sparse pattern of 251: variance p(1-p) for a fraction p of 251s.
    grey = np.full((256, 256), 250, dtype=np.uint8)
    grey[::16, ::4] = 251
    p = (grey == 251).mean()
    mean, var = ops.patch_stats(torch.from_numpy(grey)[None, None], 256, 256)
    assert mean.item() == pytest.approx(250 + p, rel=1e-7)
    assert var.item() == pytest.approx(p * (1 - p), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_float_rgb_uses_luma_weights(rng, dtype):
    image = torch.from_numpy(rng.random((1, 3, 70, 90))).to(dtype)
    x = image.double().numpy()[0] * 255
    grey = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    mean, var = ops.patch_stats(image, 20, 7)
    want_mean, want_var = numpy_patch_stats(grey, 20, 7)
    np.testing.assert_allclose(mean[0].numpy(), want_mean, rtol=1e-6)
    np.testing.assert_allclose(var[0].numpy(), want_var, rtol=1e-5)


def test_float_bright_flat_area_keeps_small_variance(rng):
    grey = 0.98 + rng.normal(0, 0.001, size=(1, 1, 300, 300))
    mean, var = ops.patch_stats(torch.from_numpy(grey).float(), 256, 16)
    want_mean, want_var = numpy_patch_stats(torch.from_numpy(grey).float().double().numpy()[0, 0] * 255, 256, 16)
    np.testing.assert_allclose(mean[0].numpy(), want_mean, rtol=1e-6)
    np.testing.assert_allclose(var[0].numpy(), want_var, rtol=1e-4)


def test_single_channel_uint8_as_is(rng):
    grey = rng.integers(0, 256, size=(1, 1, 40, 50), dtype=np.uint8)
    mean, var = ops.patch_stats(torch.from_numpy(grey), 10, 10)
    want_mean, want_var = numpy_patch_stats(grey[0, 0].astype(np.float64), 10, 10)
    np.testing.assert_allclose(mean[0].numpy(), want_mean, rtol=1e-6)
    np.testing.assert_allclose(var[0].numpy(), want_var, rtol=1e-6)


def test_channels_last_input(rng):
    image = torch.from_numpy(rng.integers(0, 256, size=(2, 3, 60, 70), dtype=np.uint8))
    got = ops.patch_stats(image.contiguous(memory_format=torch.channels_last), 16, 4)
    want = ops.patch_stats(image, 16, 4)
    assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_image_smaller_than_patch_gives_no_patches():
    mean, var = ops.patch_stats(torch.zeros(1, 3, 100, 300, dtype=torch.uint8), 256, 256)
    assert mean.shape == (1, 0, 1) and var.shape == (1, 0, 1)


def test_composition_baseline_matches_op(rng):
    image = torch.from_numpy(rng.integers(0, 256, size=(1, 3, 200, 260), dtype=np.uint8))
    for got, want in zip(ops.patch_stats(image, 64, 16), ops.patch_stats_reference(image, 64, 16)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "shape,patch,stride,match",
    [((1, 4, 32, 32), 8, 8, "1 \\(grey\\) or 3 \\(RGB\\) channels"), ((3, 32, 32), 8, 8, "\\(B, C, H, W\\)"),
     ((1, 3, 32, 32), 0, 8, "patch must be in"), ((1, 3, 32, 32), 8, 0, "stride must be >= 1")],
)
def test_bad_arguments(shape, patch, stride, match):
    with pytest.raises(RealSRError, match=match):
        ops.patch_stats(torch.zeros(shape, dtype=torch.uint8), patch, stride)


def test_opcheck(rng):
    image = torch.from_numpy(rng.integers(0, 256, size=(2, 3, 40, 50), dtype=np.uint8))
    torch.library.opcheck(torch.ops.realsr_fast.patch_stats.default, (image, 16, 4))
    torch.library.opcheck(torch.ops.realsr_fast.patch_stats.default, (image.float() / 255, 8, 8))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=str)
def test_cuda_matches_cpu(rng, dtype):
    image = torch.from_numpy(rng.integers(0, 256, size=(2, 3, 300, 410), dtype=np.uint8))
    if dtype != torch.uint8:
        image = image.to(dtype) / 255
    for patch, stride in [(256, 256), (64, 8), (1, 1)]:
        for got, want in zip(ops.patch_stats(image.cuda(), patch, stride), ops.patch_stats(image, patch, stride)):
            torch.testing.assert_close(got.cpu(), want, rtol=1e-6, atol=1e-5)
