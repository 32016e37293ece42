"""`batchnorm_relu`: training-mode BatchNorm + ReLU in one pass forward and one backward, for
KernelGAN's discriminator (docs/METHOD.md §6), whose small maps make the stock ops' overhead
dominate; its autograd formulas (no double backward), its fakes, and `batchnorm_relu_reference`."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import realsr_fast.ops._library  # noqa: F401  (loads the compiled library, which defines the ops)
from realsr_fast.errors import RealSRError


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


def _rows_and_two_vectors(x):
    """What both batchnorm_relu ops return: a contiguous tensor like x and two `(rows,)` vectors."""
    rows = x.shape[0]
    return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty((rows,)), x.new_empty((rows,))


def _batchnorm_relu_fake(x, weight, bias, eps):
    torch._check(x.dim() == 2, lambda: f"batchnorm_relu: x must be (rows, cols), got {tuple(x.shape)}")
    return _rows_and_two_vectors(x)


def _batchnorm_relu_backward_fake(grad_y, x, y, mean, invstd, weight):
    return _rows_and_two_vectors(x)


#: Fake (meta) implementations for torch.compile, registered by `realsr_fast.ops` (see its docstring).
FAKES = {
    "realsr_fast::batchnorm_relu": _batchnorm_relu_fake,
    "realsr_fast::batchnorm_relu_backward": _batchnorm_relu_backward_fake,
}


def batchnorm_relu_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """:func:`batchnorm_relu` composed from stock PyTorch: ``F.batch_norm(training=True)`` then ReLU."""
    return torch.relu(F.batch_norm(x[None], None, None, weight, bias, training=True, eps=eps)[0])
