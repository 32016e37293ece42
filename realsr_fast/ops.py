"""The compiled ops of realsr_fast, and the plain-PyTorch compositions they replace.

- :func:`degrade`: blur + stride downsample + real-noise injection in one pass (RealSR's
  degradation, docs/METHOD.md §3 and §5).
- :func:`patch_stats`: grey mean and variance of every patch, for noise mining (section 4).
- :func:`batchnorm_relu`: training-mode BatchNorm + ReLU in one pass forward and one backward,
  for KernelGAN's discriminator (section 6), whose small maps make the stock ops' overhead dominate.
- :func:`correlation_kernel_grad`: the kernel gradient of a strided correlation (KernelGAN's
  collapsed generator), which the stock convolution backward computes slowly for large kernels.
- :func:`winograd_input_transform` / :func:`winograd_output_transform`: the tile transforms of a
  Winograd F(6x6, 3x3) convolution (docs/winograd.md), for fp32 RRDBNet inference on the CPU
  (CPU only, no gradient; the products between them are a stock batched GEMM).

The first four run on CPU and CUDA tensors through the dispatcher (``torch.ops.realsr_fast.*``) and have fake
implementations, so ``torch.compile`` can trace code that calls them. The fakes and the autograd
formulas are registered here, in Python (the gradient of ``degrade`` is that of its stock
composition, which lives here), so the ops are complete once this module is imported, as every part
of realsr_fast that runs them does. The library names this module as their home
(``set_python_module``): tracing an op with only ``realsr_fast._C`` loaded fails with an error
that says to import ``realsr_fast.ops``.
``degrade`` is differentiable in ``hr`` and ``kernels`` (not through ``quantize`` or a uint8 output,
which raise); ``batchnorm_relu`` once (a double backward raises). The ``*_reference`` functions
(``degrade_reference``, ``patch_stats_reference``, ``batchnorm_relu_reference``,
``correlation_kernel_grad_reference``) are what a user would write with stock PyTorch; tests check
the ops against them and benchmarks time the ops against them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Optional

import torch
import torch.nn.functional as F

from realsr_fast.errors import RealSRError

try:
    from realsr_fast import _C  # noqa: F401  (loading it registers the ops)
except ImportError as exc:  # pragma: no cover - only without a build
    raise RealSRError(
        f"the compiled ops of realsr_fast are missing ({exc}); build them with "
        "`pip install --no-build-isolation .` in the source folder"
    ) from None

PADDINGS = ("symmetric", "reflect", "replicate", "zeros")
_DEGRADE_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.uint8)


def degrade(
    hr: torch.Tensor,
    kernels: torch.Tensor,
    scale: int,
    *,
    noise_bank: Optional[torch.Tensor] = None,
    noise_index: Optional[torch.Tensor] = None,
    noise_offset: Optional[torch.Tensor] = None,
    padding: str = "symmetric",
    clamp: bool = True,
    quantize: bool = False,
    out_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Blurs, stride-downsamples and adds real noise in one pass.

    ``out[b,c,i,j] = sum_{u,v} K_b[u,v] * HR~[b, c, s*i + u - k//2, s*j + v - k//2] + N[b,c,i,j]``
    with ``HR~`` the image extended by ``padding`` and
    ``N[b,c,i,j] = bank[idx_b, c, oy_b + i, ox_b + j]`` minus its mean over the output-sized crop.

    Args:
        hr: ``(B, C, H, W)`` uint8 (read as value/255) or float16/bfloat16/float32 in [0, 1];
            any strides (contiguous or channels_last).
        kernels: ``(B, k, k)`` one kernel per sample, or ``(k, k)`` for all; odd or even k.
        scale: the stride s >= 1; the output is ``(B, C, ceil(H/s), ceil(W/s))``.
        noise_bank: ``(N, C, Ph, Pw)`` uint8 (value/255) or float noise patches, or None.
        noise_index: ``(B,)`` which bank patch each sample uses.
        noise_offset: ``(B, 2)`` top-left ``(oy, ox)`` of each sample's crop in its patch.
        padding: ``symmetric`` (scipy 'reflect', RealSR's), ``reflect`` (torch 'reflect'),
            ``replicate`` or ``zeros``.
        clamp: clamp to [0, 1].
        quantize: round to the nearest 1/255 (half to even).
        out_dtype: float32 (default), float16, bfloat16, or uint8 (clamped, returns round(255 x)).

    Returns:
        ``(B, C, ceil(H/s), ceil(W/s))`` tensor of ``out_dtype``, in ``hr``'s memory format.

    Raises:
        RealSRError: on inconsistent arguments (ranks, devices, out-of-range noise choices...).

    Example:
        >>> hr = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
        >>> degrade(hr, torch.full((5, 5), 1 / 25), 4).shape
        torch.Size([2, 3, 16, 16])
    """
    if kernels.is_floating_point() and kernels.dtype != torch.float32:
        kernels = kernels.float()
    try:
        return torch.ops.realsr_fast.degrade(
            hr, kernels, scale, noise_bank, noise_index, noise_offset, padding, clamp, quantize, out_dtype
        )
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def patch_stats(img: torch.Tensor, patch: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey mean and population variance (0..255 scale) of every patch.

    Grey is PIL's 'L' conversion for 3-channel uint8 images (an integer), 0.299 R + 0.587 G +
    0.114 B for float images in [0, 1] (scaled by 255), and a single channel as it is. The cost per
    pixel does not depend on the patch size, and uint8 statistics are exact to float32 rounding.

    Args:
        img: ``(B, C, H, W)`` with C = 1 or 3; uint8 or float16/bfloat16/float32 in [0, 1].
        patch: patch side (1..2048).
        stride: step between patches; patches start at 0, stride, 2*stride... and lie fully inside.

    Returns:
        ``(mean, var)``, each ``(B, nh, nw)`` float32 with ``nh = (H - patch) // stride + 1``
        (0 when the image is smaller than a patch).

    Example:
        >>> img = torch.randint(0, 256, (1, 3, 600, 800), dtype=torch.uint8)
        >>> mean, var = patch_stats(img, 256, 256)
        >>> mean.shape
        torch.Size([1, 2, 3])
    """
    try:
        return torch.ops.realsr_fast.patch_stats(img, patch, stride)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def batchnorm_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Training-mode BatchNorm followed by ReLU, each row of ``x`` one BatchNorm channel.

    ``y[r] = relu(weight[r] * (x[r] - mean(x[r])) / sqrt(var(x[r]) + eps) + bias[r])`` with the
    population variance over the row, as ``F.batch_norm(training=True)`` computes it. Differentiable
    in ``x``, ``weight`` and ``bias`` (once: no double backward).

    Args:
        x: ``(rows, cols)`` float32 or float64, cols >= 2: a channel's values across the batch.
        weight: ``(rows,)`` BatchNorm scale, same dtype and device.
        bias: ``(rows,)`` BatchNorm shift.
        eps: added to the variance (> 0).

    Returns:
        ``(rows, cols)`` tensor like ``x``.

    Example:
        >>> x = torch.randn(64, 400)
        >>> batchnorm_relu(x, torch.ones(64), torch.zeros(64)).shape
        torch.Size([64, 400])
    """
    try:
        return torch.ops.realsr_fast.batchnorm_relu(x, weight, bias, eps)[0]
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def correlation_kernel_grad(x: torch.Tensor, grad: torch.Tensor, stride: int, size: int) -> torch.Tensor:
    """Gradient of a strided valid correlation with respect to its per-image kernels.

    For ``out[b, n, i, j] = sum_{u,v} kernel[n, u, v] * x[b, n, s*i + u, s*j + v]`` and the
    gradient ``grad`` of a loss with respect to ``out``, returns
    ``grad_kernel[n, u, v] = sum_{b,i,j} grad[b, n, i, j] * x[b, n, s*i + u, s*j + v]``.

    Args:
        x: ``(B, N, H, W)`` float32 or float64: B maps per image share image n's kernel.
        grad: ``(B, N, h, w)`` like ``x``, with ``s*(h-1) + size <= H`` (same for w).
        stride: s >= 1.
        size: kernel side, 1..32.

    Returns:
        ``(N, size, size)`` tensor like ``x``.

    Example:
        >>> x, grad = torch.randn(3, 2, 64, 64), torch.randn(3, 2, 26, 26)
        >>> correlation_kernel_grad(x, grad, 2, 13).shape
        torch.Size([2, 13, 13])
    """
    try:
        return torch.ops.realsr_fast.correlation_kernel_grad(x, grad, stride, size)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


#: G of Winograd F(6x6, 3x3), the kernel transform U = G g G^T (Lavin & Gray 2016; the points 0, 1,
#: -1, 2, -2, 1/2, -1/2, infinity; the input and output transforms B^T and A^T are in
#: csrc/winograd.h, all three in docs/winograd.md).
WINOGRAD_KERNEL_TRANSFORM = (
    (1, 0, 0), (-2 / 9, -2 / 9, -2 / 9), (-2 / 9, 2 / 9, -2 / 9),
    (1 / 90, 1 / 45, 2 / 45), (1 / 90, -1 / 45, 2 / 45),
    (32 / 45, 16 / 45, 8 / 45), (32 / 45, -16 / 45, 8 / 45), (0, 0, 1),
)
#: Output tile side, input window side, and channels per vector (the ops need a multiple of it).
WINOGRAD_TILE, WINOGRAD_WINDOW, WINOGRAD_CHANNEL_MULTIPLE = 6, 8, 8


def winograd_kernels(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution's weight in the Winograd domain: ``(Cout, Cin, 3, 3) -> (64, Cin, Cout)``
    float32, ``U[8p + q, i, o] = (G w[o, i] G^T)[p, q]``, computed in float64."""
    g = torch.tensor(WINOGRAD_KERNEL_TRANSFORM, dtype=torch.float64)
    u = torch.einsum("pa,oiab,qb->pqio", g, weight.detach().to("cpu", torch.float64), g)
    return u.reshape(WINOGRAD_WINDOW**2, weight.shape[1], weight.shape[0]).float().contiguous()


def winograd_tile_count(batch: int, height: int, width: int) -> int:
    """T, the number of 6x6 output tiles of a (batch, height, width) image."""
    return batch * -(-height // WINOGRAD_TILE) * -(-width // WINOGRAD_TILE)


def winograd_input_transform(x: torch.Tensor, out: torch.Tensor, channel_offset: int = 0) -> None:
    """Writes ``B^T d B`` of every 8x8 window (6x6 output tiles, one pixel of zero padding) of ``x``
    into channels ``[channel_offset, channel_offset + C)`` of ``out``. CPU, float32, for inference
    (no gradient).

    Args:
        x: ``(N, H, W, C)`` contiguous NHWC, C a multiple of 8.
        out: ``(64, T, C')`` with ``T = winograd_tile_count(N, H, W)`` (tiles in n, row, column
            order) and unit channel stride; ``out[8p + q, t, c] = (B^T d_{t,c} B)[p, q]``.
    """
    try:
        torch.ops.realsr_fast.winograd_input_transform(x, out, channel_offset)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def winograd_output_transform(m: torch.Tensor, bias: torch.Tensor, out: torch.Tensor, *,
                              negative_slope: Optional[float] = None, residual: Optional[torch.Tensor] = None,
                              residual_scale: float = 1.0) -> None:
    """Writes ``residual + residual_scale * act(A^T M A + bias)`` of every tile into ``out``, with
    ``act`` a LeakyReLU of ``negative_slope`` (none when None). CPU, float32, for inference.

    Args:
        m: ``(64, T, C)`` products summed over input channels (``bmm`` of the transformed input
            and `winograd_kernels`), unit channel stride.
        bias: ``(C,)``.
        out: ``(N, H, W, C)`` contiguous NHWC with ``winograd_tile_count(N, H, W) == T``; tiles
            are cropped at its right and bottom edges.
        residual: None or a tensor like ``out`` (may be ``out`` itself).
    """
    try:
        torch.ops.realsr_fast.winograd_output_transform(
            m, bias, out, 0.0 if negative_slope is None else negative_slope, negative_slope is not None,
            residual, residual_scale)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def cpu_isa() -> str:
    """The instruction set the CPU ops' hot loops run: ``baseline``, ``avx2`` or ``avx512``.

    The best the CPU supports unless the environment variable ``REALSR_FAST_ISA`` (read when the
    library loads) names another. The clones compile one source, but the AVX2 and AVX-512 ones
    fuse multiply-adds (FMA contraction: one rounding instead of two), so their results agree with
    the baseline's to within floating-point rounding (the op's forward error bound), not bit for
    bit; uint8 ``patch_stats`` (integer sums) and plain sums agree exactly
    (tests/test_isa_clones.py).
    """
    try:
        return torch.ops.realsr_fast.cpu_isa()
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


@contextlib.contextmanager
def forced_cpu_isa(isa: str) -> Iterator[None]:
    """Runs the CPU ops' ``isa`` clone inside the block (tests and benchmarks compare clones; they
    agree to within floating-point rounding, see :func:`cpu_isa`).

    Raises:
        RealSRError: for an unknown name or one this CPU lacks.
    """
    try:
        previous = torch.ops.realsr_fast.set_cpu_isa(isa)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None
    try:
        yield
    finally:
        torch.ops.realsr_fast.set_cpu_isa(previous)


def _batchnorm_relu_setup(ctx, inputs, output):
    x, weight, _, _ = inputs
    y, mean, invstd = output
    ctx.save_for_backward(x, y, mean, invstd, weight)
    ctx.mark_non_differentiable(mean, invstd)


def _batchnorm_relu_backward(ctx, grad_y, _grad_mean, _grad_invstd):
    x, y, mean, invstd, weight = ctx.saved_tensors
    grad_x, grad_weight, grad_bias = torch.ops.realsr_fast.batchnorm_relu_backward(grad_y, x, y, mean, invstd, weight)
    return grad_x, grad_weight, grad_bias, None


torch.library.register_autograd(
    "realsr_fast::batchnorm_relu", _batchnorm_relu_backward, setup_context=_batchnorm_relu_setup
)


def _no_double_backward(ctx, *grads):
    raise RealSRError(
        "batchnorm_relu has no double backward (its backward op is not differentiable); use "
        "batchnorm_relu_reference (stock F.batch_norm + relu) where second derivatives are needed"
    )


def _batchnorm_relu_backward_setup(ctx, inputs, output):
    pass


# Without this, a second derivative through batchnorm_relu would silently come out as zeros.
torch.library.register_autograd(
    "realsr_fast::batchnorm_relu_backward", _no_double_backward, setup_context=_batchnorm_relu_backward_setup
)


def _degrade_setup(ctx, inputs, output):
    hr, kernels, scale, bank, index, offset, padding, clamp, quantize, out_dtype = inputs
    if bank is not None and bank.requires_grad:
        raise RealSRError("degrade: the noise bank is not differentiable; pass noise_bank.detach()")
    if (hr.requires_grad or kernels.requires_grad) and (quantize or out_dtype == torch.uint8):
        raise RealSRError(
            "degrade: quantize=True and out_dtype=torch.uint8 round the output, whose gradient is zero; "
            "use quantize=False and a float out_dtype to differentiate through degrade"
        )
    ctx.save_for_backward(hr, kernels, bank, index, offset)
    ctx.options = dict(padding=padding, clamp=clamp, out_dtype=out_dtype)
    ctx.scale = scale


def _degrade_backward(ctx, grad):
    """degrade is linear in hr and in kernels (up to the clamp, whose mask the recomputation keeps):
    the gradients are those of the stock composition, obtained by differentiating it."""
    hr, kernels, bank, index, offset = ctx.saved_tensors
    wants = ctx.needs_input_grad[:2]
    with torch.enable_grad():
        hr_ = hr.detach().requires_grad_(wants[0])
        kernels_ = kernels.detach().requires_grad_(wants[1])
        out = degrade_reference(hr_, kernels_, ctx.scale, noise_bank=bank, noise_index=index, noise_offset=offset,
                                **ctx.options)
        inputs = [t for t, want in zip((hr_, kernels_), wants) if want]
        grads = iter(torch.autograd.grad(out, inputs, grad))
    return (next(grads) if wants[0] else None, next(grads) if wants[1] else None, *([None] * 8))


torch.library.register_autograd("realsr_fast::degrade", _degrade_backward, setup_context=_degrade_setup)


def _output_size(size: int, scale: int) -> int:
    return (size + scale - 1) // scale


@torch.library.register_fake("realsr_fast::degrade")
def _degrade_fake(hr, kernels, scale, noise_bank=None, noise_index=None, noise_offset=None,
                  padding="symmetric", clamp=True, quantize=False, out_dtype=None):
    torch._check(hr.dim() == 4, lambda: f"degrade: hr must be (B, C, H, W), got {tuple(hr.shape)}")
    torch._check(kernels.dim() in (2, 3), lambda: "degrade: kernels must be (k, k) or (B, k, k)")
    batch, channels, height, width = hr.shape
    size = (batch, channels, _output_size(height, scale), _output_size(width, scale))
    memory_format = torch._prims_common.suggest_memory_format(hr)
    return torch.empty(size, dtype=out_dtype or torch.float32, device=hr.device, memory_format=memory_format)


@torch.library.register_fake("realsr_fast::patch_stats")
def _patch_stats_fake(img, patch, stride):
    torch._check(img.dim() == 4, lambda: f"patch_stats: img must be (B, C, H, W), got {tuple(img.shape)}")
    batch, _, height, width = img.shape
    out_h = (height - patch) // stride + 1 if height >= patch else 0
    out_w = (width - patch) // stride + 1 if width >= patch else 0
    mean = img.new_empty((batch, out_h, out_w), dtype=torch.float32)
    return mean, torch.empty_like(mean)


def _rows_and_two_vectors(x):
    """What both batchnorm_relu ops return: a contiguous tensor like x and two `(rows,)` vectors."""
    rows = x.shape[0]
    return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty((rows,)), x.new_empty((rows,))


@torch.library.register_fake("realsr_fast::batchnorm_relu")
def _batchnorm_relu_fake(x, weight, bias, eps):
    torch._check(x.dim() == 2, lambda: f"batchnorm_relu: x must be (rows, cols), got {tuple(x.shape)}")
    return _rows_and_two_vectors(x)


@torch.library.register_fake("realsr_fast::batchnorm_relu_backward")
def _batchnorm_relu_backward_fake(grad_y, x, y, mean, invstd, weight):
    return _rows_and_two_vectors(x)


@torch.library.register_fake("realsr_fast::winograd_input_transform")
def _winograd_input_transform_fake(x, out, channel_offset):
    return None


@torch.library.register_fake("realsr_fast::winograd_output_transform")
def _winograd_output_transform_fake(m, bias, out, negative_slope, leaky_relu, residual, residual_scale):
    return None


@torch.library.register_fake("realsr_fast::correlation_kernel_grad")
def _correlation_kernel_grad_fake(x, grad, stride, size):
    torch._check(x.dim() == 4, lambda: f"correlation_kernel_grad: x must be (B, N, H, W), got {tuple(x.shape)}")
    return x.new_empty((x.shape[1], size, size))


# --- Plain PyTorch compositions (the baselines) -------------------------------------------------


def _symmetric_indices(start: int, stop: int, size: int, device: torch.device) -> torch.Tensor:
    """Source indices of positions start..stop-1 under half-sample symmetric extension."""
    idx = torch.arange(start, stop, device=device).remainder(2 * size)
    return torch.where(idx < size, idx, 2 * size - 1 - idx)


def _extend(x: torch.Tensor, k: int, scale: int, padding: str) -> torch.Tensor:
    """Pads ``(N, C, H, W)`` so that a valid stride-``scale`` correlation gives ceil(H/s) rows."""
    height, width = x.shape[-2:]
    before = k // 2
    after_h = max(0, scale * (_output_size(height, scale) - 1) + k - 1 - before - (height - 1))
    after_w = max(0, scale * (_output_size(width, scale) - 1) + k - 1 - before - (width - 1))
    if padding == "symmetric":
        rows = _symmetric_indices(-before, height + after_h, height, x.device)
        cols = _symmetric_indices(-before, width + after_w, width, x.device)
        return x.index_select(-2, rows).index_select(-1, cols)
    mode = {"reflect": "reflect", "replicate": "replicate", "zeros": "constant"}[padding]
    return F.pad(x, (before, after_w, before, after_h), mode=mode)


def degrade_reference(
    hr: torch.Tensor,
    kernels: torch.Tensor,
    scale: int,
    *,
    noise_bank: Optional[torch.Tensor] = None,
    noise_index: Optional[torch.Tensor] = None,
    noise_offset: Optional[torch.Tensor] = None,
    padding: str = "symmetric",
    clamp: bool = True,
    quantize: bool = False,
    out_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """:func:`degrade` composed from stock PyTorch: pad, grouped strided conv2d, gathered noise.

    Same arguments and result (contiguous, to float rounding); allocates every intermediate.
    """
    batch, channels, height, width = hr.shape
    k = kernels.shape[-1]
    x = hr.float() / 255 if hr.dtype == torch.uint8 else hr.float()
    x = _extend(x, k, scale, padding)
    if kernels.dim() == 3:
        weight = kernels.float().repeat_interleave(channels, dim=0).unsqueeze(1)
        y = F.conv2d(x.reshape(1, batch * channels, *x.shape[-2:]), weight, stride=scale, groups=batch * channels)
    else:
        y = F.conv2d(x.reshape(batch * channels, 1, *x.shape[-2:]), kernels.float()[None, None], stride=scale)
    out_h, out_w = _output_size(height, scale), _output_size(width, scale)
    y = y.reshape(batch, channels, *y.shape[-2:])[..., :out_h, :out_w]
    if noise_bank is not None:
        rows = noise_offset[:, 0, None] + torch.arange(out_h, device=hr.device)
        cols = noise_offset[:, 1, None] + torch.arange(out_w, device=hr.device)
        crop = noise_bank[
            noise_index[:, None, None, None],
            torch.arange(channels, device=hr.device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ].float()
        if noise_bank.dtype == torch.uint8:
            crop = crop / 255
        y = y + (crop - crop.mean(dim=(2, 3), keepdim=True))
    if clamp or out_dtype == torch.uint8:
        y = y.clamp(0, 1)
    if out_dtype == torch.uint8:
        return torch.round(y * 255).to(torch.uint8)
    if quantize:
        y = torch.round(y * 255) / 255
    return y.to(out_dtype or torch.float32)


def grey_reference(img: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H, W)`` float64 grey on the 0..255 scale, as patch_stats defines it."""
    if img.dtype == torch.uint8:
        if img.shape[1] == 1:
            return img[:, 0].double()
        r, g, b = img.long().unbind(1)
        return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).double()
    x = img.double() * 255
    if x.shape[1] == 1:
        return x[:, 0]
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def patch_stats_reference(img: torch.Tensor, patch: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`patch_stats` composed from stock PyTorch: grey, then box filters (avg_pool2d) of
    grey and grey^2 in float64. Returns float32 ``(mean, var)``, each ``(B, nh, nw)``."""
    grey = grey_reference(img).unsqueeze(1)
    mean = F.avg_pool2d(grey, patch, stride)
    mean_sq = F.avg_pool2d(grey * grey, patch, stride)
    var = (mean_sq - mean * mean).clamp_min(0)
    return mean[:, 0].float(), var[:, 0].float()


def batchnorm_relu_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """:func:`batchnorm_relu` composed from stock PyTorch: ``F.batch_norm(training=True)`` then ReLU."""
    return torch.relu(F.batch_norm(x[None], None, None, weight, bias, training=True, eps=eps)[0])


def correlation_kernel_grad_reference(x: torch.Tensor, grad: torch.Tensor, stride: int, size: int) -> torch.Tensor:
    """:func:`correlation_kernel_grad` composed from stock PyTorch: one grouped convolution of the
    maps with the output gradient dilated by the stride (the convolution's weight gradient)."""
    batch, images, height, width = x.shape
    by_image = x.transpose(0, 1).reshape(1, images * batch, height, width)
    out = F.conv2d(by_image, grad.transpose(0, 1), dilation=stride, groups=images)
    return out[0, :, :size, :size]
