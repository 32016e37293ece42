"""imresize against MATLAB's definition (a literal numpy port), PIL, torch; bicubic_kernel vs degrade."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from realsr_fast.data.imresize import TORCH_CUBIC_A, bicubic_kernel, imresize
from realsr_fast.errors import RealSRError


# ---- MATLAB's imresize, transliterated from imresize.m (R2013+), loops over outputs and taps ----
def matlab_cubic(x: np.ndarray) -> np.ndarray:
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
    ) * ((1 < absx) & (absx <= 2))


def contributions(in_length: int, out_length: int, scale: float, mirror: bool = True):
    """MATLAB's contributions(): weights and 1-based indices, each (out_length, P)."""
    kernel_width = 4.0
    if scale < 1:
        h = lambda x: scale * matlab_cubic(scale * x)  # noqa: E731
        kernel_width = kernel_width / scale
    else:
        h = matlab_cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)[:, None]
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(np.ceil(kernel_width)) + 2
    indices = left + np.arange(p)[None, :]
    weights = h(u - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    if mirror:
        aux = np.concatenate([np.arange(1, in_length + 1), np.arange(in_length, 0, -1)])
        indices = aux[np.mod(indices - 1, len(aux)).astype(int)]
    keep = np.any(weights, axis=0)
    return weights[:, keep], indices[:, keep].astype(int)


def resize_along_dim(img: np.ndarray, dim: int, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    img = np.moveaxis(img, dim, 0)
    out = np.zeros((weights.shape[0],) + img.shape[1:])
    for i in range(weights.shape[0]):
        for p in range(weights.shape[1]):
            out[i] += weights[i, p] * img[indices[i, p] - 1]
    return np.moveaxis(out, 0, dim)


def matlab_imresize(img: np.ndarray, scale: float | None = None, size=None) -> np.ndarray:
    """imresize(img, scale | [rows cols], 'bicubic') for a double (H, W, C) image."""
    in_size = img.shape[:2]
    if scale is not None:
        scales = (scale, scale)
        out_size = tuple(math.ceil(scale * n) for n in in_size)
    else:
        out_size = tuple(size)
        scales = tuple(o / n for o, n in zip(out_size, in_size))
    out = img.astype(np.float64)
    for dim in np.argsort(scales, kind="stable"):  # MATLAB resizes the most-shrunk axis first
        weights, indices = contributions(in_size[dim], out_size[dim], scales[dim])
        out = resize_along_dim(out, int(dim), weights, indices)
    return out


def interior(in_length: int, out_length: int, scale: float) -> np.ndarray:
    """Outputs whose non-zero taps all lie inside the image (no boundary rule involved)."""
    weights, indices = contributions(in_length, out_length, scale, mirror=False)
    inside = (indices >= 1) & (indices <= in_length)
    return np.all(inside | (weights == 0), axis=1)


def to_hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).numpy()


CASES = [  # (H, W, scale, size)
    (31, 47, 0.5, None),
    (40, 40, 0.25, None),
    (33, 20, 1 / 3, None),
    (50, 37, 0.37, None),
    (17, 23, 2.0, None),
    (9, 11, 1.7, None),
    (13, 29, None, (7, 40)),
    (1, 5, 3.0, None),
    (6, 4, 0.125, None),
]


@pytest.mark.parametrize("h, w, scale, size", CASES)
def test_matches_matlab_definition(h, w, scale, size):
    rng = np.random.default_rng(h * 1000 + w)
    img = rng.random((h, w, 3))
    expected = matlab_imresize(img, scale, size)
    x = torch.from_numpy(img).permute(2, 0, 1)
    got64 = imresize(x, scale, size)
    assert got64.dtype == torch.float64
    np.testing.assert_allclose(to_hwc(got64), expected, rtol=0, atol=1e-12)
    got32 = imresize(x.float(), scale, size)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(to_hwc(got32), expected, rtol=0, atol=3e-6)


def test_real_image_and_batch():
    from skimage import data

    img = data.astronaut()[::2, ::2].astype(np.float64) / 255  # (256, 256, 3)
    img = img[:255, :201]  # odd, non-square
    expected = matlab_imresize(img, 0.5)
    x = torch.from_numpy(img).permute(2, 0, 1)
    batch = torch.stack([x, x.flip(-1)])
    got = imresize(batch, 0.5)
    assert got.shape == (2, 3, 128, 101)
    np.testing.assert_allclose(to_hwc(got[0]), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(to_hwc(got[1]), matlab_imresize(img[:, ::-1], 0.5), rtol=0, atol=1e-12)


def test_uint8_is_read_as_unit_range_float():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.integers(0, 256, (2, 3, 21, 30), dtype=np.uint8))
    got = imresize(x, 0.5)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, imresize(x.float() / 255, 0.5), rtol=0, atol=1e-6)


def test_half_precision_keeps_dtype():
    x = torch.rand(1, 3, 20, 22, generator=torch.Generator().manual_seed(4))
    got = imresize(x.half(), 0.5)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), imresize(x, 0.5), rtol=0, atol=2e-3)


@pytest.mark.parametrize("h, w, out_h, out_w", [(64, 48, 32, 24), (61, 45, 17, 23), (20, 31, 47, 66)])
def test_pil_agrees_where_no_tap_leaves_the_image(h, w, out_h, out_w):
    """PIL: same kernel (a=-0.5), antialiasing and geometry; it truncates at the edge instead of mirroring."""
    rng = np.random.default_rng(h + w)
    img = rng.random((h, w, 3)).astype(np.float32)
    pil = np.stack(
        [np.asarray(Image.fromarray(img[..., c], mode="F").resize((out_w, out_h), Image.BICUBIC)) for c in range(3)],
        axis=-1,
    )
    ours = to_hwc(imresize(torch.from_numpy(img).permute(2, 0, 1), size=(out_h, out_w)))
    rows = interior(h, out_h, out_h / h)
    cols = interior(w, out_w, out_w / w)
    assert rows.any() and cols.any() and not rows.all()
    inner = np.ix_(rows, cols)
    np.testing.assert_allclose(ours[inner], pil[inner], rtol=0, atol=2e-6)
    assert np.abs(ours - pil).max() > 1e-4  # the boundary rules do differ


def interior_mask(h: int, w: int, out_h: int, out_w: int) -> torch.Tensor:
    rows = torch.from_numpy(interior(h, out_h, out_h / h))
    cols = torch.from_numpy(interior(w, out_w, out_w / w))
    return rows[:, None] & cols[None, :]


@pytest.mark.parametrize("h, w, out_h, out_w", [(64, 48, 32, 24), (61, 45, 17, 23), (20, 31, 47, 66)])
def test_torch_antialias_is_pils_scheme_with_matlabs_kernel(h, w, out_h, out_w):
    """torch's antialiased bicubic ports PIL (a=-0.5, truncation at the edge)."""
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    ref = F.interpolate(x, size=(out_h, out_w), mode="bicubic", antialias=True, align_corners=False)
    inner = (..., interior_mask(h, w, out_h, out_w))
    torch.testing.assert_close(imresize(x, size=(out_h, out_w))[inner], ref[inner], rtol=0, atol=2e-6)


@pytest.mark.parametrize("h, w, out_h, out_w", [(20, 31, 47, 66), (16, 16, 64, 64)])
def test_torch_plain_bicubic_upscale_is_a_minus_075(h, w, out_h, out_w):
    """torch's plain bicubic: a=-0.75, edge replicated; enlarging, the interior matches a=-0.75 here."""
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    ref = F.interpolate(x, size=(out_h, out_w), mode="bicubic", antialias=False, align_corners=False)
    inner = (..., interior_mask(h, w, out_h, out_w))
    torch.testing.assert_close(imresize(x, size=(out_h, out_w), a=TORCH_CUBIC_A)[inner], ref[inner], rtol=0, atol=2e-6)
    assert (imresize(x, size=(out_h, out_w))[inner] - ref[inner]).abs().max() > 1e-2  # a=-0.5 differs


# ---- bicubic_kernel: degrade's correlation contract, written in numpy ----
def degrade_contract(x: np.ndarray, kernel: np.ndarray, s: int) -> np.ndarray:
    """out[i, j] = sum_{u,v} K[u, v] * x~[s*i + u - k//2, s*j + v - k//2], x~ half-sample symmetric."""
    k = kernel.shape[0]
    h, w = x.shape
    out_h, out_w = math.ceil(h / s), math.ceil(w / s)
    pad = k + s
    padded = np.pad(x, pad, mode="symmetric")
    out = np.zeros((out_h, out_w))
    for u in range(k):
        for v in range(k):
            rows = s * np.arange(out_h) + u - k // 2 + pad
            cols = s * np.arange(out_w) + v - k // 2 + pad
            out += kernel[u, v] * padded[np.ix_(rows, cols)]
    return out


@pytest.mark.parametrize(
    "s, size, expected_size", [(1, None, 1), (2, None, 9), (3, None, 13), (4, None, 19), (4, 33, 33), (2, 10, 10)]
)
@pytest.mark.parametrize("h, w", [(37, 50), (5, 7)])
def test_bicubic_kernel_reproduces_imresize_through_degrade(s, size, expected_size, h, w):
    kernel = bicubic_kernel(s, size, dtype=torch.float64)
    assert kernel.shape == (expected_size, expected_size)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-14)
    x = np.random.default_rng(s * 100 + h).random((h, w))
    via_kernel = degrade_contract(x, kernel.numpy(), s)
    via_resize = imresize(torch.from_numpy(x)[None], 1 / s)[0].numpy()
    np.testing.assert_allclose(via_kernel, via_resize, rtol=0, atol=1e-12)


def test_bicubic_kernel_is_centred_like_kernelgan_kernels():
    kernel = bicubic_kernel(4, 33, dtype=torch.float64)
    positions = torch.arange(33, dtype=torch.float64)
    assert (kernel.sum(1) * positions).sum().item() == pytest.approx(17.5, abs=1e-12)
    assert kernel.dtype == torch.float64 and bicubic_kernel(4).dtype == torch.float32


def test_bicubic_kernel_rejects_bad_arguments():
    with pytest.raises(RealSRError, match="at least 19"):
        bicubic_kernel(4, 17)
    with pytest.raises(RealSRError, match="integer scale"):
        bicubic_kernel(2.5)


def test_rejects_bad_arguments():
    x = torch.rand(3, 8, 8)
    with pytest.raises(RealSRError, match="exactly one"):
        imresize(x)
    with pytest.raises(RealSRError, match="exactly one"):
        imresize(x, 0.5, (4, 4))
    with pytest.raises(RealSRError, match="positive"):
        imresize(x, -1.0)
    with pytest.raises(RealSRError, match="shape"):
        imresize(torch.rand(8, 8), 0.5)
    with pytest.raises(RealSRError, match="int16"):
        imresize(x.to(torch.int16), 0.5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 45, 70, generator=torch.Generator().manual_seed(9))
    for scale in (0.5, 0.25, 2.0):
        got = imresize(x.cuda(), scale)
        assert got.is_cuda
        torch.testing.assert_close(got.cpu(), imresize(x, scale), rtol=0, atol=1e-6)
