"""KernelGAN-FKP's generator: each image's kernel is the flow prior's decoding of a trained latent.

As KernelGAN-FKP (Liang et al., CVPR 2021; JingyunLiang/FKP, KernelGANFKP/model/networks.py
`Generator_KP` and loss.py `SphericalOptimizer`): G is no deep linear net but one correlation with
kernel = flow.decode(z); only z (121 numbers per image) is trained, and after every step it is put
back on the sphere of radius `kernel size - 1` = 10 where the paper found the optimisation best.
The kernel is always non-negative, sums to 1 and has the prior's shape, so KernelGAN's kernel
constraints (and its bicubic warm-up) are not used in this mode.

The decoded 11x11 kernel is zero-padded to G's 13x13 window: both sizes are odd, so the centre of
mass stays where KernelGAN wants it (6.5 = 5.5 + 1).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from realsr_fast.kernel_estimation.kernelgan.constraints import LR_START, learning_rate
from realsr_fast.kernel_estimation.kernelgan.flow import DIM, KERNEL_SIZE, load_flow
from realsr_fast.kernel_estimation.kernelgan.networks import G_KERNEL_SIZE, GForm, _StridedCorrelation

LATENT_RADIUS = KERNEL_SIZE - 1.0
LATENT_LR = 5e-3
"""Adam's starting learning rate for the latents."""
LATENT_LR_DECAYS = True
"""Whether the latents' rate follows the official drops (/10 after 750, 1500, 2250 iterations)."""


def latent_learning_rate(iteration: int) -> float:
    """The latents' Adam rate during `iteration`: `LATENT_LR`, dropped with the official schedule."""
    return LATENT_LR * learning_rate(iteration) / LR_START if LATENT_LR_DECAYS else LATENT_LR


def latent_init(gen: torch.Generator) -> torch.Tensor:
    """One image's starting latent `(121,)`: a standard normal draw from `gen`, on the sphere."""
    z = torch.randn(DIM, generator=gen)
    return z * (LATENT_RADIUS / z.norm())


class FlowGenerator(nn.Module):
    """N generators `G(x) = (x correlated with decode(z_n))` taken at stride 2; same calls as `BatchedGenerator`."""

    def __init__(self, latents: Sequence[torch.Tensor]):
        super().__init__()
        self.latent = nn.Parameter(torch.stack(list(latents)))
        self.flow = copy.deepcopy(load_flow())  # moved with the module, without touching the shared one

    def kernel(self) -> torch.Tensor:
        """`(N, 13, 13)` kernels, sum 1, centre of mass (6.5, 6.5) up to the prior's accuracy."""
        pad = (G_KERNEL_SIZE - KERNEL_SIZE) // 2
        return F.pad(self.flow.decode(self.latent), (pad, pad, pad, pad))

    @torch.no_grad()
    def project(self) -> None:
        """Back onto the sphere of radius `LATENT_RADIUS` (after each optimiser step)."""
        self.latent.mul_(LATENT_RADIUS / self.latent.norm(dim=1, keepdim=True).clamp(min=1e-9))

    def forward(
        self, x: torch.Tensor, form: GForm = "collapsed", kernel: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Crops `(N, 3, H, W)` -> `(G(x) (N, 3, (H - 13)//2 + 1, ...), kernel (N, 13, 13))`; `form` is ignored."""
        kernel = self.kernel() if kernel is None else kernel
        return _StridedCorrelation.apply(x.transpose(0, 1), kernel).transpose(0, 1), kernel
