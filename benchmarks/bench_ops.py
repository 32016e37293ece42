"""The compiled ops against what a user would otherwise write, timed in the same run.

    python -m pytest benchmarks/bench_ops.py --benchmark-json benchmarks/results/ops_cpu.json
    python benchmarks/ratios.py benchmarks/results/ops_cpu.json

Cases (issue 2): a training batch (16 x 3 x 128^2 uint8 HR, per-sample 33x33 kernels, x4, noise
from a 64 x 3 x 256^2 uint8 bank, quantised); one offline image (3 x 680 x 1020 uint8, one 33x33
kernel, x4) also against OpenCV's filter2D and scipy's per-channel correlate; patch_stats on a
1356 x 2040 photo (patch 256, stride 16) against a numpy loop and the two fastest stock PyTorch
compositions found (integral images; separable box filters, several times faster than one 2-D
avg_pool2d and bit-identical to it); KernelGAN's two ops at the shapes of a batch-16 iteration
(issue 4): BatchNorm + ReLU forward and backward over the D step's 2048 channels of 20x20, and the
collapsed G's kernel gradient, against stock PyTorch. On a GPU the same cases run on CUDA against
the PyTorch composition on CUDA.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from realsr_fast import ops

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def _synchronised(fn, device):
    if device != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


@pytest.fixture(scope="module")
def generator():
    return torch.Generator().manual_seed(2020)


def training_batch(generator, device):
    kernels = torch.rand(16, 33, 33, generator=generator)
    return dict(
        hr=torch.randint(0, 256, (16, 3, 128, 128), dtype=torch.uint8, generator=generator).to(device),
        kernels=(kernels / kernels.sum(dim=(1, 2), keepdim=True)).to(device),
        scale=4,
        noise_bank=torch.randint(0, 256, (64, 3, 256, 256), dtype=torch.uint8, generator=generator).to(device),
        noise_index=torch.randint(0, 64, (16,), generator=generator).to(device),
        noise_offset=torch.randint(0, 256 - 32 + 1, (16, 2), generator=generator).to(device),
        quantize=True,
    )


def offline_image(generator, device):
    kernel = torch.rand(33, 33, generator=generator)
    return dict(
        hr=torch.randint(0, 256, (1, 3, 680, 1020), dtype=torch.uint8, generator=generator).to(device),
        kernels=(kernel / kernel.sum()).to(device),
        scale=4,
        out_dtype=torch.uint8,
    )


def _call(fn, args):
    args = dict(args)
    return fn(args.pop("hr"), args.pop("kernels"), args.pop("scale"), **args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="degrade: training batch 16x3x128^2, k33, x4, noise")
def test_train_batch_ours(benchmark, generator, device):
    args = training_batch(generator, device)
    benchmark(_synchronised(lambda: _call(ops.degrade, args), device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="degrade: training batch 16x3x128^2, k33, x4, noise")
def test_train_batch_torch_composition(benchmark, generator, device):
    args = training_batch(generator, device)
    benchmark(_synchronised(lambda: _call(ops.degrade_reference, args), device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="degrade: offline image 3x680x1020, k33, x4")
def test_offline_image_ours(benchmark, generator, device):
    args = offline_image(generator, device)
    benchmark(_synchronised(lambda: _call(ops.degrade, args), device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="degrade: offline image 3x680x1020, k33, x4")
def test_offline_image_torch_composition(benchmark, generator, device):
    args = offline_image(generator, device)
    benchmark(_synchronised(lambda: _call(ops.degrade_reference, args), device))


@pytest.mark.benchmark(group="degrade: offline image 3x680x1020, k33, x4")
def test_offline_image_opencv_filter2d(benchmark, generator):
    args = offline_image(generator, "cpu")
    image = args["hr"][0].permute(1, 2, 0).numpy()
    kernel = args["kernels"].numpy()

    def opencv():
        # BORDER_REFLECT is the half-sample symmetric extension; filter2D correlates.
        blurred = cv2.filter2D(image.astype(np.float32) / 255, -1, kernel, borderType=cv2.BORDER_REFLECT)
        return np.round(np.clip(blurred[::4, ::4], 0, 1) * 255).astype(np.uint8)

    benchmark(opencv)


@pytest.mark.benchmark(group="degrade: offline image 3x680x1020, k33, x4")
def test_offline_image_scipy_correlate(benchmark, generator):
    """The reference implementation's route (KernelGAN imresize numeric_kernel): full-res correlate."""
    args = offline_image(generator, "cpu")
    image = args["hr"][0].numpy().astype(np.float64) / 255
    kernel = args["kernels"].numpy().astype(np.float64)

    def scipy_route():
        planes = [scipy.ndimage.correlate(plane, kernel, mode="reflect")[::4, ::4] for plane in image]
        return np.round(np.clip(np.stack(planes), 0, 1) * 255).astype(np.uint8)

    benchmark.pedantic(scipy_route, rounds=1, iterations=1)


def photo(generator, device):
    return torch.randint(0, 256, (1, 3, 1356, 2040), dtype=torch.uint8, generator=generator).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="patch_stats: 1356x2040 photo, patch 256, stride 16")
def test_patch_stats_ours(benchmark, generator, device):
    image = photo(generator, device)
    benchmark(_synchronised(lambda: ops.patch_stats(image, 256, 16), device))


def _window_sums(x: torch.Tensor, patch: int, stride: int, dim: int) -> torch.Tensor:
    """Sums of `patch` consecutive entries along `dim`, every `stride`-th window: differences of a
    zero-prefixed cumulative sum (an integral image, O(1) per entry whatever the patch)."""
    cumulative = torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), x.cumsum(dim)], dim)
    count = (x.shape[dim] - patch) // stride + 1
    ends = cumulative.narrow(dim, patch, x.shape[dim] - patch + 1)
    starts = cumulative.narrow(dim, 0, x.shape[dim] - patch + 1)
    return (ends - starts).narrow(dim, 0, stride * (count - 1) + 1).unfold(dim, 1, stride).squeeze(-1)


def patch_stats_integral_image(image: torch.Tensor, patch: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) uint8 -> float32 (mean, var), each (B, nh, nw), from stock PyTorch: integral
    images of grey and grey^2 in float64 (integer sums, exact, so equal to the box filters)."""
    grey = ops.grey_reference(image)
    area = patch * patch
    mean = _window_sums(_window_sums(grey, patch, stride, 1), patch, stride, 2) / area
    mean_sq = _window_sums(_window_sums(grey * grey, patch, stride, 1), patch, stride, 2) / area
    return mean.float(), (mean_sq - mean * mean).clamp_min(0).float()


def patch_stats_separable_box_filters(image: torch.Tensor, patch: int,
                                      stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same from two 1-D `avg_pool2d` passes (rows, then columns) of grey and grey^2 in float64:
    bit-identical to the 2-D `avg_pool2d` of `ops.patch_stats_reference` at O(patch) per output."""
    grey = ops.grey_reference(image).unsqueeze(1)

    def box(x):
        return F.avg_pool2d(F.avg_pool2d(x, (patch, 1), (stride, 1)), (1, patch), (1, stride))

    mean, mean_sq = box(grey), box(grey * grey)
    return mean[:, 0].float(), (mean_sq - mean * mean).clamp_min(0)[:, 0].float()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="patch_stats: 1356x2040 photo, patch 256, stride 16")
def test_patch_stats_torch_integral_image(benchmark, generator, device):
    image = photo(generator, device)
    benchmark(_synchronised(lambda: patch_stats_integral_image(image, 256, 16), device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="patch_stats: 1356x2040 photo, patch 256, stride 16")
def test_patch_stats_torch_separable_box_filters(benchmark, generator, device):
    image = photo(generator, device)
    benchmark(_synchronised(lambda: patch_stats_separable_box_filters(image, 256, 16), device))


@pytest.mark.benchmark(group="patch_stats: 1356x2040 photo, patch 256, stride 16")
def test_patch_stats_numpy_loop(benchmark, generator):
    rgb = photo(generator, "cpu")[0].permute(1, 2, 0).numpy().astype(np.int64)
    grey = (19595 * rgb[..., 0] + 38470 * rgb[..., 1] + 7471 * rgb[..., 2] + 32768) >> 16

    def numpy_loop():
        out_h, out_w = (grey.shape[0] - 256) // 16 + 1, (grey.shape[1] - 256) // 16 + 1
        mean, var = np.empty((out_h, out_w)), np.empty((out_h, out_w))
        for i in range(out_h):
            for j in range(out_w):
                window = grey[16 * i : 16 * i + 256, 16 * j : 16 * j + 256]
                mean[i, j], var[i, j] = window.mean(), window.var()
        return mean, var

    benchmark.pedantic(numpy_loop, rounds=1, iterations=1)


def discriminator_layer(generator, device):
    """One hidden layer of KernelGAN's D in the D step at batch 16: 2 x 16 x 64 channels of 20x20."""
    rows = 2 * 16 * 64
    return [
        torch.randn(rows, 400, generator=generator).to(device).requires_grad_(),
        (1 + 0.02 * torch.randn(rows, generator=generator)).to(device).requires_grad_(),
        torch.zeros(rows).to(device).requires_grad_(),
    ]


def _forward_backward(fn, inputs, grad):
    return torch.autograd.grad(fn(*inputs), inputs, grad)


def _warm_benchmark(benchmark, fn, device):
    """Times `fn` after one untimed call: whichever test runs first pays the process's one-off
    start of the thread pool and allocator (~0.25 s), which would otherwise eat its time budget."""
    fn = _synchronised(fn, device)
    fn()
    benchmark(fn)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="batchnorm_relu forward + backward: 2048 x 400 (KernelGAN D step, batch 16)")
def test_batchnorm_relu_ours(benchmark, generator, device):
    inputs = discriminator_layer(generator, device)
    grad = torch.randn(inputs[0].shape, generator=generator).to(device)
    _warm_benchmark(benchmark, lambda: _forward_backward(ops.batchnorm_relu, inputs, grad), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="batchnorm_relu forward + backward: 2048 x 400 (KernelGAN D step, batch 16)")
def test_batchnorm_relu_torch_batch_norm_relu(benchmark, generator, device):
    inputs = discriminator_layer(generator, device)
    grad = torch.randn(inputs[0].shape, generator=generator).to(device)
    _warm_benchmark(benchmark, lambda: _forward_backward(ops.batchnorm_relu_reference, inputs, grad), device)


def generator_crops(generator, device):
    """The collapsed G's input and output gradient at batch 16: colours x images x 64^2 -> 26^2."""
    return (
        torch.randn(3, 16, 64, 64, generator=generator).to(device),
        torch.randn(3, 16, 26, 26, generator=generator).to(device),
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="correlation kernel gradient: 3x16x64^2, stride 2, 13x13 (KernelGAN G, batch 16)")
def test_correlation_kernel_grad_ours(benchmark, generator, device):
    x, grad = generator_crops(generator, device)
    _warm_benchmark(benchmark, lambda: ops.correlation_kernel_grad(x, grad, 2, 13), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="correlation kernel gradient: 3x16x64^2, stride 2, 13x13 (KernelGAN G, batch 16)")
def test_correlation_kernel_grad_torch_dilated_conv(benchmark, generator, device):
    x, grad = generator_crops(generator, device)
    _warm_benchmark(benchmark, lambda: ops.correlation_kernel_grad_reference(x, grad, 2, 13), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.benchmark(group="correlation kernel gradient: 3x16x64^2, stride 2, 13x13 (KernelGAN G, batch 16)")
def test_correlation_kernel_grad_torch_autograd(benchmark, generator, device):
    """What autograd does for the grouped strided conv2d: the generic convolution backward."""
    x, grad = generator_crops(generator, device)
    kernel = torch.zeros(16, 1, 13, 13, device=device, requires_grad=True)

    def autograd_route():
        out = torch.nn.functional.conv2d(x, kernel, stride=2, groups=16)
        return torch.autograd.grad(out, kernel, grad)

    _warm_benchmark(benchmark, autograd_route, device)
