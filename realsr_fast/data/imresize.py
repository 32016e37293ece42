"""MATLAB-compatible bicubic resize (`imresize`, antialiased) on any torch device.

MATLAB's `imresize(img, scale)` with the default 'bicubic' method is what RealSR uses to make
clean HR images (1/2) and the Track-1 LR images (1/4). Its definition, reproduced here:

- kernel: Keys' cubic convolution with a = -0.5 (support [-2, 2]);
- when shrinking (scale < 1) the kernel is widened by 1/scale and scaled by `scale`
  (antialiasing), so it covers 4/scale input pixels;
- output pixel i (1-based) sits at input coordinate u = i/scale + (1 - 1/scale)/2, i.e. pixel
  centres are aligned (as in PIL and torch with align_corners=False); the weights of one output
  are normalised to sum to 1;
- out-of-range input indices are mirrored half-sample symmetrically (d c b a | a b c d | d c b a);
- output size ceil(scale * size) when a scale is given; with an explicit size each axis uses
  scale = out / in.

The resize is separable: per axis the taps (input indices and weights of every output) are built
once as a sparse `(out, in)` matrix and applied as one sparse-dense matmul on the input's device.

Relations to other libraries (proved in tests/test_imresize.py):
- PIL `Image.resize(..., BICUBIC)` on float ('F') images uses the same kernel (a = -0.5), the same
  antialiasing and the same pixel-centre geometry, but truncates the kernel at the image edge and
  renormalises instead of mirroring: the two agree exactly wherever no tap leaves the image.
- `torch.nn.functional.interpolate(mode="bicubic", antialias=True, align_corners=False)` ports
  PIL's scheme, a = -0.5 included: it agrees with this function on the same interior, both when
  shrinking and when enlarging.
- torch's plain bicubic (`antialias=False`) uses a = -0.75 and never widens the kernel: when
  enlarging it agrees on that interior with `imresize(..., a=-0.75)`.
"""
from __future__ import annotations

import math

import torch

from realsr_fast.errors import RealSRError
from realsr_fast.ops import symmetric_index

MATLAB_CUBIC_A = -0.5
"""Keys' parameter of MATLAB's and PIL's bicubic kernel."""
TORCH_CUBIC_A = -0.75
"""Keys' parameter of torch's plain (not antialiased) and OpenCV's bicubic kernel."""


def cubic(x: torch.Tensor, a: float = MATLAB_CUBIC_A) -> torch.Tensor:
    """Keys' cubic convolution kernel, evaluated elementwise; zero for |x| >= 2."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (a + 2) * ax3 - (a + 3) * ax2 + 1
    far = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def _axis_taps(in_len: int, out_len: int, scale: float, a: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB's `contributions`: for each output pixel the input indices and weights.

    Returns `(index, weight)`, each `(out_len, P)`: index int64 in [0, in_len) (already mirrored),
    weight float64 with rows summing to 1. Tap columns that are zero for every output are dropped.
    """
    shrink = scale < 1
    width = 4.0 / scale if shrink else 4.0
    u = torch.arange(1, out_len + 1, dtype=torch.float64) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    index = left[:, None] + torch.arange(taps, dtype=torch.float64)
    distance = u[:, None] - index
    weight = scale * cubic(distance * scale, a) if shrink else cubic(distance, a)
    weight = weight / weight.sum(dim=1, keepdim=True)
    used = weight.ne(0).any(dim=0)
    index = symmetric_index(index[:, used].long() - 1, in_len)
    return index, weight[:, used]


def _resize_axis(x: torch.Tensor, dim: int, out_len: int, scale: float, a: float) -> torch.Tensor:
    """Resize `x` along `dim` to `out_len` samples: one sparse `(out_len, in_len)` matmul."""
    index, weight = _axis_taps(x.shape[dim], out_len, scale, a)
    rows = torch.arange(out_len).repeat_interleave(index.shape[1])
    matrix = torch.sparse_coo_tensor(
        torch.stack([rows, index.flatten()]), weight.flatten(), (out_len, x.shape[dim]), check_invariants=True
    ).coalesce()  # sums the taps that mirroring folded onto the same input pixel
    moved = x.movedim(dim, 0)
    out = torch.sparse.mm(matrix.to(device=x.device, dtype=x.dtype), moved.reshape(moved.shape[0], -1))
    return out.reshape(out_len, *moved.shape[1:]).movedim(0, dim)


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    *,
    a: float = MATLAB_CUBIC_A,
) -> torch.Tensor:
    """Resize like MATLAB's `imresize(x, scale)` / `imresize(x, size)` (bicubic, antialiased).

    Args:
        x: `(B, C, H, W)` or `(C, H, W)`; float (any range, not clamped) or uint8, read as v/255.
        scale: one factor for both axes; output size `ceil(scale * (H, W))` (MATLAB's rule).
        size: `(out_h, out_w)` instead of `scale`; each axis then uses scale = out / in.
        a: Keys' cubic parameter; -0.5 is MATLAB's (and PIL's), -0.75 that of torch's plain bicubic.

    Returns:
        Same layout as `x` with the new height and width. Float inputs keep their dtype
        (float16/bfloat16 are computed in float32); uint8 inputs give float32 in the [0, 1] scale.
        Like MATLAB on double images the result is not clamped: bicubic overshoots slightly
        outside the input's range, so clamp before quantising.

    Example:
        >>> imresize(torch.rand(1, 3, 101, 64), 0.5).shape
        torch.Size([1, 3, 51, 32])
    """
    if x.dim() not in (3, 4):
        raise RealSRError(f"imresize expects a (C, H, W) or (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if (scale is None) == (size is None):
        raise RealSRError("imresize needs exactly one of `scale` and `size`")
    in_h, in_w = x.shape[-2:]
    if in_h == 0 or in_w == 0:
        raise RealSRError(f"cannot resize an empty image of size {in_h}x{in_w}")
    if scale is not None:
        if not scale > 0 or not math.isfinite(scale):
            raise RealSRError(f"the resize scale must be a positive number, got {scale}")
        out_h, out_w = math.ceil(scale * in_h), math.ceil(scale * in_w)
        scale_h = scale_w = float(scale)
    else:
        out_h, out_w = (int(n) for n in size)
        if out_h <= 0 or out_w <= 0:
            raise RealSRError(f"the output size must be positive, got {size}")
        scale_h, scale_w = out_h / in_h, out_w / in_w

    out_dtype = x.dtype
    if x.dtype == torch.uint8:
        x, out_dtype = x.float() / 255, torch.float32
    elif x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    elif not x.is_floating_point():
        raise RealSRError(f"imresize accepts float or uint8 tensors, got {x.dtype}")

    x = _resize_axis(x, -2, out_h, scale_h, a)
    x = _resize_axis(x, -1, out_w, scale_w, a)
    return x.to(out_dtype)


def bicubic_kernel(
    scale: int,
    size: int | None = None,
    *,
    a: float = MATLAB_CUBIC_A,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The `(k, k)` kernel K with `degrade(x, K, scale, padding="symmetric") == imresize(x, 1/scale)`.

    For an integer factor s, output pixel i of `imresize(x, 1/s)` sits at input coordinate
    s*i + (s-1)/2 (0-based), so every output uses the same weights on the inputs s*i + t:
    w(t) = cubic(((s-1)/2 - t) / s) / s, normalised, non-zero for |t - (s-1)/2| < 2s. The degrade
    contract reads `out[i] = sum_u K[u] * x~[s*i + u - k//2]`, so the 1-D kernel holds w(t) at
    u = t + k//2, and K is the outer product of it with itself (the resize is separable). Both
    use the same half-sample symmetric boundary, so the identity holds up to the image edges.

    Taps: 4s non-zero weights for even s (t = -1.5s .. 2.5s-1), 4s-1 for odd s
    (t = (s-1)/2 - 2s+1 .. (s-1)/2 + 2s-1). Default size: the smallest k that holds them
    (9 for x2, 13 for x3, 19 for x4); a larger `size` (e.g. 33 to join a KernelGAN x4 bank) pads
    with zeros. The centre of mass lies at k//2 + (s-1)/2 on both axes, the same place
    KernelGAN's post-processing puts it (17.5 for a 33x33 x4 kernel).

    Args:
        scale: integer down-scaling factor s >= 1.
        size: kernel side k; at least the default, which is used when None.
        a: Keys' cubic parameter (MATLAB: -0.5).
        dtype: dtype of the result (the degrade op takes float32).

    Returns:
        `(k, k)` tensor summing to 1.
    """
    if int(scale) != scale or scale < 1:
        raise RealSRError(f"a bicubic bank kernel needs an integer scale >= 1, got {scale}")
    s = int(scale)
    centre = (s - 1) / 2
    offsets = torch.arange(math.floor(centre - 2 * s), math.ceil(centre + 2 * s) + 1)
    weights = cubic((centre - offsets.double()) / s, a) / s
    nonzero = weights.ne(0)
    offsets, weights = offsets[nonzero], weights[nonzero] / weights[nonzero].sum()
    first, last = int(offsets[0]), int(offsets[-1])
    # Smallest k with k//2 >= -first and k - 1 - k//2 >= last (odd k: half = max(-first, last)).
    smallest = 2 * max(-first, last) + 1
    if -first > last:  # an even k with half -first also fits and is one smaller
        smallest -= 1
    k = smallest if size is None else int(size)
    if k < smallest:
        raise RealSRError(f"the x{s} bicubic kernel needs a size of at least {smallest}, got {size}")
    line = torch.zeros(k, dtype=torch.float64)
    line[offsets + k // 2] = weights
    return torch.outer(line, line).to(dtype)
