"""The KernelGAN training loop, for N images at once (N independent KernelGANs in one process).

One iteration, as the official `KernelGAN.train` + `Learner.update` (sefibk/KernelGAN):

1. G step: G down-scales a 64x64 crop; loss = L1(D(G(x)), 1) + weighted constraints; Adam.
2. D step: loss = 0.5 [L1(D(real 26x26 crop + noise), 1) + L1(D(G(x) + noise), 0)], with the
   freshly updated G; Adam.
3. Constraint weights and learning rate follow their schedules.

Images are in [-1, 1]; D's real crops get N(0, 1/255) noise in the [0, 1] scale (2/255 here),
the fake ones N(0, 1/255) in [-1, 1], as the official code. Unlike it, the real-crop noise is not
left behind in the image (its in-place `crop += noise` made noise pile up over the iterations).

Randomness is per image: its seed feeds one CPU torch.Generator (G and D initialisation), one
numpy Generator (crop positions) and one generator on the device (noise), so image n of a stack
gets exactly what it would get alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from realsr_fast.kernel_estimation import ITERATIONS
from realsr_fast.kernel_estimation.kernelgan import LAMBDA_BICUBIC_START
from realsr_fast.kernel_estimation.kernelgan.constraints import (
    ConstraintSchedule,
    bicubic_loss,
    kernel_constraints,
    learning_rate,
    penalty_mask,
)
from realsr_fast.kernel_estimation.kernelgan.crops import D_CROP, G_CROP, crop_corners
from realsr_fast.kernel_estimation.kernelgan.networks import (
    BatchedDiscriminator,
    BatchedGenerator,
    GForm,
    discriminator_init,
    generator_init,
)

ADAM_BETAS = (0.5, 0.999)
NOISE_CHUNK = 64
"""Iterations of noise drawn per image at a time (fewer, larger random draws)."""


@dataclass
class KernelGANResult:
    """What training leaves: the raw kernels and whether each image reached the constrained phase."""

    kernels: torch.Tensor
    """`(N, 13, 13)` float64 on the CPU: G's kernel at the last G step (the official `curr_k`)."""
    constrained: list[bool]
    """Per image: the bicubic warm-up ended and the centralized/sparse terms were switched on."""


class _CropSource:
    """All images flattened into one `(3, total)` buffer, cropped by index gathers."""

    def __init__(self, images: Sequence[np.ndarray], device: torch.device, dtype: torch.dtype):
        flats = [torch.from_numpy(im.transpose(2, 0, 1).reshape(3, -1)).to(dtype) for im in images]
        sizes = torch.tensor([f.shape[1] for f in flats])
        self.flat = (torch.cat(flats, dim=1) * 2 - 1).to(device)
        self.offsets = (torch.cumsum(sizes, 0) - sizes).to(device)
        self.widths = torch.tensor([im.shape[1] for im in images], device=device)
        self.n = len(images)

    def crops(self, corners: torch.Tensor, size: int) -> torch.Tensor:
        """Corners `(N, 2)` (top, left) -> crops `(N, 3, size, size)`."""
        grid = torch.arange(size, device=corners.device)
        rows = (corners[:, 0, None] + grid)[:, :, None] * self.widths[:, None, None]
        cols = (corners[:, 1, None] + grid)[:, None, :]
        index = (self.offsets[:, None, None] + rows + cols).reshape(-1)
        return self.flat[:, index].reshape(3, self.n, size, size).transpose(0, 1)


class _NoiseStreams:
    """Each image's D noise, drawn from its own generator in chunks: `(N, 2, 3, 26, 26)` per iteration."""

    def __init__(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype):
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.device, self.dtype = device, dtype
        self.chunk: torch.Tensor | None = None
        self.position = NOISE_CHUNK

    def next(self) -> torch.Tensor:
        if self.position == NOISE_CHUNK:
            shape = (NOISE_CHUNK, 2, 3, D_CROP, D_CROP)
            draws = [torch.randn(shape, generator=g, device=self.device, dtype=self.dtype) for g in self.generators]
            self.chunk, self.position = torch.stack(draws, dim=1), 0
        self.position += 1
        return self.chunk[self.position - 1]


def train_kernelgan(
    images: Sequence[np.ndarray],
    seeds: Sequence[int],
    iterations: int = ITERATIONS,
    form: GForm = "collapsed",
    device: torch.device | str = "cpu",
    on_iteration: Callable[[int], None] | None = None,
    dtype: torch.dtype = torch.float32,
    bicubic_weight: float = LAMBDA_BICUBIC_START,
) -> KernelGANResult:
    """Train one KernelGAN per image, all together.

    Args:
        images: N `crops.prepare_image` outputs `(H_n, W_n, 3)` float64 in [0, 1]; sizes may differ.
        seeds: N seeds, one per image.
        iterations: training iterations (official: 3000).
        form: generator form, "collapsed" (fast) or "literal" (the official deep convolutions).
        device: where to train.
        on_iteration: called with the iteration number after each iteration (progress bars).
        dtype: float32 (as the official code); float64 to check the batched computation against
            single-image runs, whose float32 rounding differences GAN training amplifies within
            a few dozen iterations.
        bicubic_weight: the bicubic loss's starting weight: 5 as upstream KernelGAN, 20 as the copy
            inside Real-SR's code.

    Returns:
        `KernelGANResult` with the `(N, 13, 13)` raw kernels.
    """
    if len(images) != len(seeds) or not images:
        raise ValueError("train_kernelgan needs one seed per image and at least one image")
    device = torch.device(device)
    init_generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    g_net = BatchedGenerator([generator_init(g) for g in init_generators]).to(device, dtype)
    opt_g = torch.optim.Adam(g_net.parameters(), lr=learning_rate(0), betas=ADAM_BETAS, fused=True)
    d_net = BatchedDiscriminator([discriminator_init(g) for g in init_generators]).to(device, dtype)
    opt_d = torch.optim.Adam(d_net.parameters(), lr=learning_rate(0), betas=ADAM_BETAS, fused=True)

    corners = [crop_corners(im, iterations, np.random.default_rng(int(s))) for im, s in zip(images, seeds)]
    g_corners = torch.from_numpy(np.stack([c[0] for c in corners], axis=1)).to(device)  # (T, N, 2)
    d_corners = torch.from_numpy(np.stack([c[1] for c in corners], axis=1)).to(device)
    source = _CropSource(images, device, dtype)
    noise = _NoiseStreams(seeds, device, dtype)
    schedule = ConstraintSchedule.start(len(images), device, bicubic_weight)
    mask = penalty_mask().to(device, dtype)

    # Collapsed form: G's kernel for the current weights. The D step needs it right after G's
    # update and the next G step needs the same one, so it is built once per update and its graph
    # serves that G step (G's weights do not change in between).
    next_kernel = g_net.kernel() if form == "collapsed" else None
    for iteration in range(iterations):
        lr = learning_rate(iteration)
        for group in opt_d.param_groups + opt_g.param_groups:
            group["lr"] = lr
        g_in = source.crops(g_corners[iteration], G_CROP)
        d_noise = noise.next()
        d_real = source.crops(d_corners[iteration], D_CROP) + d_noise[:, 0] * (2.0 / 255.0)

        # G step: D's weights are constants here (the official code zeroes their gradients anyway).
        opt_g.zero_grad(set_to_none=True)
        g_out, kernel = g_net(g_in, form, next_kernel)
        d_fake = d_net(g_out[:, None], d_net.normalised_weights(passes=1, grad=False))[:, 0]
        loss_bicubic = bicubic_loss(g_out, g_in)
        loss_g = (1 - d_fake).abs().mean(-1) + schedule.weighted_sum(loss_bicubic, kernel_constraints(kernel, mask))
        loss_g.sum().backward()
        opt_g.step()

        # D step: real, then fake from the updated G (two forwards, two power iterations).
        opt_d.zero_grad(set_to_none=True)
        if form == "collapsed":
            next_kernel = g_net.kernel()
        with torch.no_grad():
            fake = g_net(g_in, form, None if next_kernel is None else next_kernel.detach())[0] + d_noise[:, 1] / 255.0
        scores = d_net(torch.stack([d_real, fake], dim=1), d_net.normalised_weights(passes=2))
        loss_d = 0.5 * ((1 - scores[:, 0]).abs().mean(-1) + scores[:, 1].abs().mean(-1))
        loss_d.sum().backward()
        opt_d.step()

        schedule.update(iteration, loss_bicubic)
        if on_iteration is not None:
            on_iteration(iteration)

    constrained = (schedule.lambda_sparse > 0).tolist()
    return KernelGANResult(kernels=kernel.detach().to("cpu", torch.float64), constrained=constrained)
