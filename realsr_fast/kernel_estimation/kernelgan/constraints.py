"""KernelGAN's kernel constraints, their weights' schedule and the learning-rate schedule.

As in the official code (sefibk/KernelGAN loss.py and learner.py), for the 13x13 kernel k that the
generator G imitates (a correlation kernel whose output pixel i looks at input pixels 2i..2i+12):

| term        | value                                                 | weight                     |
|-------------|-------------------------------------------------------|----------------------------|
| bicubic     | MSE(G(x), x correlated with the 8x8 bicubic, stride 2) | 5, /100 every 200 it ...  |
| sum-to-1    | abs(1 - sum k)                                        | 0.5                        |
| boundaries  | mean abs(k * mask), mask = 30 x outer-ring penalty    | 0.5                        |
| centralized | MSE(centre of mass of k, (6.5, 6.5))                  | 0, then 1                  |
| sparse      | mean abs(k) ** 0.2                                    | 0, then 5                  |

Every function here works on a leading image dimension N, so that N KernelGANs run side by side;
each image's losses and weights are its own.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from realsr_fast.data.imresize import bicubic_kernel
from realsr_fast.kernel_estimation.kernelgan import LAMBDA_BICUBIC_START
from realsr_fast.kernel_estimation.kernelgan.networks import G_KERNEL_SIZE
from realsr_fast.kernel_estimation.postprocess import wanted_centre

WANTED_CENTRE = wanted_centre(G_KERNEL_SIZE, 2)
"""6.5: where the x2 kernel's centre of mass belongs (output i centred on input 2i + 0.5)."""

LAMBDA_SUM2ONE = 0.5
LAMBDA_BOUNDARIES = 0.5
LAMBDA_BICUBIC_MIN = 5e-6
LAMBDA_BICUBIC_DECAY = 100.0
LAMBDA_CENTRALIZED_END = 1.0
LAMBDA_SPARSE_END = 5.0
BICUBIC_LOSS_TO_START_CHANGE = 0.4
LAMBDA_UPDATE_EVERY = 200
LR_START = 2e-4
LR_DROP_EVERY = 750
LR_DROP_FACTOR = 10.0
BOUNDARY_PENALTY_SCALE = 30.0
SPARSITY_POWER = 0.2


@functools.cache
def bicubic_loss_kernel() -> torch.Tensor:
    """The official 8x8 x2 bicubic kernel `(8, 8)` of the bicubic loss (MATLAB cubic, a = -0.5).

    It is the outer product of cubic(t/2)/2 at t = +-0.5, +-1.5, +-2.5, +-3.5; the project's
    9x9 aligned bank kernel holds it in rows/columns 1..8. Computed once (every iteration uses
    it); callers must not modify the returned tensor.
    """
    return bicubic_kernel(2, 9)[1:, 1:].contiguous()


def bicubic_target(g_input: torch.Tensor) -> torch.Tensor:
    """What the bicubic loss compares G's output with.

    Args:
        g_input: `(N, 3, 64, 64)` crops in [-1, 1].

    Returns:
        `(N, 1, 26, 26)`, the same for all three colour channels. The official code expands the
        kernel to `(3, 3, 8, 8)` in an ungrouped convolution, so every channel of its target is
        the bicubic down-scaling of R + G + B; we keep that. Its padding of 3 followed by the
        shave to 26x26 never reaches the padding: output j covers inputs 2j+3 .. 2j+10.
    """
    kernel = bicubic_loss_kernel().to(g_input)
    summed = g_input.sum(dim=1, keepdim=True)[..., 3:61, 3:61]
    return F.conv2d(summed, kernel[None, None], stride=2)


def bicubic_loss(g_output: torch.Tensor, g_input: torch.Tensor) -> torch.Tensor:
    """Per-image MSE between G's output `(N, 3, 26, 26)` and `bicubic_target(g_input)`: `(N,)`."""
    return (g_output - bicubic_target(g_input)).square().mean(dim=(1, 2, 3))


def penalty_mask(size: int = G_KERNEL_SIZE) -> torch.Tensor:
    """The boundaries-loss mask `(size, size)`: 30 x (1 - normalised wide Gaussian) on the outer ring.

    As the official `create_penalty_mask(13, 30)`: a Gaussian with sigma = size, one minus it
    divided by its maximum, and everything inside the outer 2-pixel ring set to 0.
    """
    z = np.arange(-size // 2 + 1, size // 2 + 1, dtype=np.float64)
    line = np.exp(-(z**2) / (2.0 * size**2)) / np.sqrt(2 * np.pi * size**2)
    mask = np.outer(line, line)
    mask = 1 - mask / mask.max()
    margin = (size - (size // 2 + size % 2)) // 2 - 1
    mask[margin:-margin, margin:-margin] = 0
    return torch.from_numpy(BOUNDARY_PENALTY_SCALE * mask).float()


def kernel_constraints(kernel: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four constraints that look only at the kernel, each `(N,)`.

    Args:
        kernel: `(N, 13, 13)` kernels G imitates.
        mask: `penalty_mask()` on the kernel's device.
    """
    total = kernel.sum(dim=(1, 2))
    index = torch.arange(kernel.shape[-1], dtype=kernel.dtype, device=kernel.device)
    centre_row = (kernel.sum(dim=2) @ index) / total
    centre_col = (kernel.sum(dim=1) @ index) / total
    return {
        "sum2one": (1 - total).abs(),
        "boundaries": (kernel * mask).abs().mean(dim=(1, 2)),
        "centralized": ((centre_row - WANTED_CENTRE).square() + (centre_col - WANTED_CENTRE).square()) / 2,
        "sparse": kernel.abs().pow(SPARSITY_POWER).mean(dim=(1, 2)),
    }


def learning_rate(iteration: int) -> float:
    """Adam's learning rate for G and D during `iteration` (0-based).

    The official `Learner.update(i)` divides it by 10 after iterations 750, 1500, 2250, so
    iterations 0..750 use 2e-4, 751..1500 use 2e-5, and so on.
    """
    return LR_START / LR_DROP_FACTOR ** (max(iteration - 1, 0) // LR_DROP_EVERY)


@dataclass
class ConstraintSchedule:
    """Per-image constraint weights, updated after every iteration as the official `Learner`.

    Until an image's bicubic loss has been below 0.4 on three iterations in a row, nothing
    changes; from then on, every 200 iterations its bicubic weight is divided by 100 (floor 5e-6),
    and when it first drops below 5e-3 the centralized (1) and sparse (5) terms are switched on.
    All state is held in `(N,)` tensors on the training device, so updating never waits for it.
    """

    lambda_bicubic: torch.Tensor
    lambda_centralized: torch.Tensor
    lambda_sparse: torch.Tensor
    counter: torch.Tensor
    similar_to_bicubic: torch.Tensor
    insert_constraints: torch.Tensor

    @classmethod
    def start(cls, n: int, device: torch.device | str,
              bicubic_weight: float = LAMBDA_BICUBIC_START) -> "ConstraintSchedule":
        """The initial weights for `n` images; `bicubic_weight` is the bicubic loss's starting weight."""
        zeros = torch.zeros(n, dtype=torch.float64, device=device)
        return cls(
            lambda_bicubic=zeros + bicubic_weight,
            lambda_centralized=zeros.clone(),
            lambda_sparse=zeros.clone(),
            counter=torch.zeros(n, dtype=torch.int64, device=device),
            similar_to_bicubic=torch.zeros(n, dtype=torch.bool, device=device),
            insert_constraints=torch.ones(n, dtype=torch.bool, device=device),
        )

    def weighted_sum(self, loss_bicubic: torch.Tensor, constraints: dict[str, torch.Tensor]) -> torch.Tensor:
        """The constraints part of G's loss, `(N,)`."""
        dtype = loss_bicubic.dtype
        return (
            loss_bicubic * self.lambda_bicubic.to(dtype)
            + constraints["sum2one"] * LAMBDA_SUM2ONE
            + constraints["boundaries"] * LAMBDA_BOUNDARIES
            + constraints["centralized"] * self.lambda_centralized.to(dtype)
            + constraints["sparse"] * self.lambda_sparse.to(dtype)
        )

    def update(self, iteration: int, loss_bicubic: torch.Tensor) -> None:
        """Apply the `Learner.update` rule after `iteration` given this iteration's `(N,)` bicubic loss."""
        if iteration == 0:
            return
        waiting = ~self.similar_to_bicubic
        below = loss_bicubic.detach() < BICUBIC_LOSS_TO_START_CHANGE
        reached = waiting & below & (self.counter >= 2)
        counted = torch.where(self.counter >= 2, self.counter, self.counter + 1)
        self.counter = torch.where(waiting, torch.where(below, counted, torch.zeros_like(self.counter)), self.counter)
        if iteration % LAMBDA_UPDATE_EVERY == 0:
            decay = self.similar_to_bicubic & (self.lambda_bicubic > LAMBDA_BICUBIC_MIN)
            decayed = (self.lambda_bicubic / LAMBDA_BICUBIC_DECAY).clamp(min=LAMBDA_BICUBIC_MIN)
            self.lambda_bicubic = torch.where(decay, decayed, self.lambda_bicubic)
            switch_on = decay & self.insert_constraints & (self.lambda_bicubic < 5e-3)
            self.lambda_centralized = torch.where(switch_on, LAMBDA_CENTRALIZED_END, self.lambda_centralized)
            self.lambda_sparse = torch.where(switch_on, LAMBDA_SPARSE_END, self.lambda_sparse)
            self.insert_constraints = self.insert_constraints & ~switch_on
        self.similar_to_bicubic = self.similar_to_bicubic | reached
