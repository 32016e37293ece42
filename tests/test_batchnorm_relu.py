"""realsr_fast.ops.batchnorm_relu against a numpy transcription of training-mode BatchNorm + ReLU,
stock PyTorch's autograd, and finite differences."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realsr_fast import RealSRError, ops

# Row lengths around the op's 16 interleaved partial sums: shorter, equal, with a tail, KernelGAN's.
SHAPES = [(1, 2), (3, 5), (2, 16), (7, 37), (64, 400)]


def numpy_batchnorm_relu(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """The definition row by row in float64: population variance, scale, shift, clip at zero."""
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        mean = x[r].mean()
        var = ((x[r] - mean) ** 2).mean()
        out[r] = np.maximum(weight[r] * (x[r] - mean) / np.sqrt(var + eps) + bias[r], 0.0)
    return out


def random_inputs(rng, rows, cols, dtype):
    x = torch.from_numpy(rng.normal(0.3, 2.0, (rows, cols))).to(dtype)
    weight = torch.from_numpy(rng.normal(1.0, 0.3, rows)).to(dtype)
    bias = torch.from_numpy(rng.normal(0.0, 0.5, rows)).to(dtype)
    return x, weight, bias


@pytest.mark.parametrize("rows,cols", SHAPES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_forward_matches_numpy(rng, rows, cols, dtype, tol):
    x, weight, bias = random_inputs(rng, rows, cols, dtype)
    got = ops.batchnorm_relu(x, weight, bias, 1e-5)
    want = numpy_batchnorm_relu(x.double().numpy(), weight.double().numpy(), bias.double().numpy(), 1e-5)
    assert got.dtype == dtype and got.shape == (rows, cols)
    np.testing.assert_allclose(got.double().numpy(), want, rtol=tol, atol=tol)
    if cols > 1:
        assert (got == 0).any() and (got > 0).any()  # both sides of the ReLU were exercised


@pytest.mark.parametrize("rows,cols", SHAPES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_gradients_match_stock_pytorch(rng, rows, cols, dtype, tol):
    x, weight, bias = random_inputs(rng, rows, cols, dtype)
    grad_y = torch.from_numpy(rng.normal(size=(rows, cols))).to(dtype)
    ours_in = [t.clone().requires_grad_() for t in (x, weight, bias)]
    stock_in = [t.clone().requires_grad_() for t in (x, weight, bias)]
    ours = torch.autograd.grad(ops.batchnorm_relu(*ours_in), ours_in, grad_y)
    stock = torch.autograd.grad(ops.batchnorm_relu_reference(*stock_in), stock_in, grad_y)
    for got, want in zip(ours, stock):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol, atol=tol)


def test_gradcheck_finite_differences(rng):
    inputs = [t.requires_grad_() for t in random_inputs(rng, 4, 21, torch.float64)]
    assert torch.autograd.gradcheck(lambda x, w, b: ops.batchnorm_relu(x, w, b, 1e-5), inputs)


def test_opcheck(rng):
    for dtype in (torch.float32, torch.float64):
        x, weight, bias = random_inputs(rng, 6, 40, dtype)
        torch.library.opcheck(torch.ops.realsr_fast.batchnorm_relu.default, (x.requires_grad_(), weight, bias, 1e-5))


def test_non_contiguous_input(rng):
    x, weight, bias = random_inputs(rng, 30, 8, torch.float32)
    got = ops.batchnorm_relu(x.t().contiguous().t(), weight, bias)
    torch.testing.assert_close(got, ops.batchnorm_relu(x, weight, bias))


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda x, w, b: (x[0], w, b), "must be \\(rows, cols\\)"),
        (lambda x, w, b: (x.half(), w, b), "float32 or float64"),
        (lambda x, w, b: (x, w[:-1], b), "weight must have shape"),
        (lambda x, w, b: (x, w, b.double()), "bias must be Float"),
        (lambda x, w, b: (x[:, :1], w, b), "more than one value"),
    ],
)
def test_bad_arguments_raise_realsr_error(rng, change, message):
    with pytest.raises(RealSRError, match=message):
        ops.batchnorm_relu(*change(*random_inputs(rng, 4, 9, torch.float32)))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(rng, dtype):
    x, weight, bias = random_inputs(rng, 96, 400, dtype)
    grad_y = torch.from_numpy(rng.normal(size=x.shape)).to(dtype)
    results = []
    for device in ("cpu", "cuda"):
        inputs = [t.to(device).requires_grad_() for t in (x, weight, bias)]
        y = ops.batchnorm_relu(*inputs)
        results.append([y, *torch.autograd.grad(y, inputs, grad_y.to(device))])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-5)


def test_double_backward_raises(rng):
    """A second derivative must raise rather than come out as zeros."""
    x, weight, bias = (t.requires_grad_() for t in random_inputs(rng, 4, 21, torch.float64))
    (grad_x,) = torch.autograd.grad(ops.batchnorm_relu(x, weight, bias).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RealSRError, match="no double backward"):
        grad_x.sum().backward()
