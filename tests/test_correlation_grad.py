"""realsr_fast.ops.correlation_kernel_grad against the literal sum, stock PyTorch's convolution
weight gradient, and autograd through a strided F.conv2d."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from realsr_fast import RealSRError, ops


def numpy_kernel_grad(x: np.ndarray, grad: np.ndarray, stride: int, size: int) -> np.ndarray:
    """The definition, one kernel tap at a time, in float64."""
    _, images, _, _ = x.shape
    out_h, out_w = grad.shape[2:]
    result = np.zeros((images, size, size))
    for n in range(images):
        for u in range(size):
            for v in range(size):
                window = x[:, n, u : u + stride * (out_h - 1) + 1 : stride, v : v + stride * (out_w - 1) + 1 : stride]
                result[n, u, v] = (grad[:, n] * window).sum()
    return result


# (B, N, H, W, stride, size); the output covers as much of x as fits.
CASES = [(1, 1, 5, 5, 1, 1), (3, 2, 17, 23, 2, 5), (2, 3, 30, 19, 3, 7), (3, 4, 64, 64, 2, 13), (1, 2, 40, 40, 1, 32)]


def random_case(rng, case, dtype):
    batch, images, height, width, stride, size = case
    out_h, out_w = (height - size) // stride + 1, (width - size) // stride + 1
    x = torch.from_numpy(rng.normal(size=(batch, images, height, width))).to(dtype)
    grad = torch.from_numpy(rng.normal(size=(batch, images, out_h, out_w))).to(dtype)
    return x, grad, stride, size


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-3)])
def test_matches_literal_sum(rng, case, dtype, tol):
    x, grad, stride, size = random_case(rng, case, dtype)
    got = ops.correlation_kernel_grad(x, grad, stride, size)
    want = numpy_kernel_grad(x.double().numpy(), grad.double().numpy(), stride, size)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got.double().numpy(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES)
def test_matches_stock_convolution_gradient(rng, case):
    x, grad, stride, size = random_case(rng, case, torch.float64)
    want = ops.correlation_kernel_grad_reference(x, grad, stride, size)
    torch.testing.assert_close(ops.correlation_kernel_grad(x, grad, stride, size), want, rtol=1e-10, atol=1e-10)
    # ... which is autograd's gradient of the strided grouped correlation itself.
    kernel = torch.zeros(x.shape[1], size, size, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(x, kernel[:, None], stride=stride, groups=x.shape[1])
    (autograd,) = torch.autograd.grad(out, kernel, grad)
    torch.testing.assert_close(want, autograd, rtol=1e-10, atol=1e-10)


def test_output_smaller_than_x_allows(rng):
    """x may extend past the last window (the gradient only reads what the windows cover)."""
    x, grad, stride, size = random_case(rng, (2, 2, 31, 29, 2, 5), torch.float64)
    got = ops.correlation_kernel_grad(x, grad[:, :, :-3, :-2].contiguous(), stride, size)
    want = numpy_kernel_grad(x.numpy(), grad[:, :, :-3, :-2].numpy(), stride, size)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)


def test_opcheck(rng):
    for dtype in (torch.float32, torch.float64):
        torch.library.opcheck(torch.ops.realsr_fast.correlation_kernel_grad.default, random_case(rng, CASES[1], dtype))


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda x, g: (x[0], g, 2, 13), "must be \\(B, N, H, W\\)"),
        (lambda x, g: (x.half(), g, 2, 13), "float32 or float64"),
        (lambda x, g: (x, g[:, :1], 2, 13), "x's B and N"),
        (lambda x, g: (x, g.float(), 2, 13), "grad must be Double"),
        (lambda x, g: (x, g, 0, 13), "stride must be >= 1"),
        (lambda x, g: (x, g, 2, 33), "size must be in 1..32"),
        (lambda x, g: (x, g, 2, 15), "reads past the 64 samples of x along dim 2"),
        (lambda x, g: (x, g, 2**62, 13), "reads past the 64 samples of x along dim 2"),  # 2**62 * 25 wraps int64
        # 25 * stride = 2**64 + 9: an unchecked product wraps to a 22-sample reach, which "fits"
        (lambda x, g: (x, g, (2**64 - 16) // 25 + 1, 13), "reads past the 64 samples of x along dim 2"),
    ],
)
def test_bad_arguments_raise_realsr_error(rng, change, message):
    x, grad, _, _ = random_case(rng, CASES[3], torch.float64)
    with pytest.raises(RealSRError, match=message):
        ops.correlation_kernel_grad(*change(x, grad))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(rng, dtype):
    x, grad, stride, size = random_case(rng, CASES[3], dtype)
    got = ops.correlation_kernel_grad(x.cuda(), grad.cuda(), stride, size)
    torch.testing.assert_close(got.cpu(), ops.correlation_kernel_grad(x, grad, stride, size), rtol=1e-5, atol=1e-4)
