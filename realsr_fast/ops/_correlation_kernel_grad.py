"""`correlation_kernel_grad`: the kernel gradient of a strided correlation (KernelGAN's collapsed
generator), which the stock convolution backward computes slowly for large kernels; its fake, and
`correlation_kernel_grad_reference`, the stock convolution's weight gradient."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import realsr_fast.ops._library  # noqa: F401  (loads the compiled library, which defines the ops)
from realsr_fast.errors import RealSRError


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


def _correlation_kernel_grad_fake(x, grad, stride, size):
    torch._check(x.dim() == 4, lambda: f"correlation_kernel_grad: x must be (B, N, H, W), got {tuple(x.shape)}")
    return x.new_empty((x.shape[1], size, size))


#: Fake (meta) implementations for torch.compile, registered by `realsr_fast.ops` (see its docstring).
FAKES = {
    "realsr_fast::correlation_kernel_grad": _correlation_kernel_grad_fake,
}


def correlation_kernel_grad_reference(x: torch.Tensor, grad: torch.Tensor, stride: int, size: int) -> torch.Tensor:
    """:func:`correlation_kernel_grad` composed from stock PyTorch: one grouped convolution of the
    maps with the output gradient dilated by the stride (the convolution's weight gradient)."""
    batch, images, height, width = x.shape
    by_image = x.transpose(0, 1).reshape(1, images * batch, height, width)
    out = F.conv2d(by_image, grad.transpose(0, 1), dilation=stride, groups=images)
    return out[0, :, :size, :size]
