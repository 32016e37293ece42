"""A flow-based kernel prior (FKP): an invertible map between x2 blur kernels and a Gaussian latent.

Design after Liang et al., "Flow-based Kernel Prior with Application to Blind Super-Resolution"
(CVPR 2021) and its public code (JingyunLiang/FKP, FKP/network.py, FKP/dataloader.py): a
RealNVP-style flow over the 121 taps of an 11x11 kernel, 5 blocks of [affine coupling with
alternating odd/even masks (scale net: Linear-Tanh-Linear-Tanh-Linear, translation net the same
with ReLU, 15 hidden units), BatchNorm]. Kernels enter the flow in logit space: clamped at 0,
divided by a constant that puts the narrowest kernel's peak just under 1, dequantisation noise
U(0, 1/720) added, then logit(alpha + (1 - 2 alpha) v) with alpha 1e-6.

Training data: the noise-free part of the DIV2KRK family `synthetic.anisotropic_gaussian` draws
from (covariance eigenvalues uniform in a range a little wider than [0.6, 5], random angle, centre
of mass at 5.5, KernelGAN's x2 alignment), drawn fresh for every step. `decode` maps latents to
kernels (sum 1); KernelGAN-FKP optimises the latent instead of G's weights.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import nn

from realsr_fast.kernel_estimation.postprocess import wanted_centre

KERNEL_SIZE = 11
DIM = KERNEL_SIZE**2
BLOCKS = 5
HIDDEN = 15
ALPHA = 1e-6
DEQUANTISE = 1.0 / 720.0
TRAIN_MIN_VARIANCE = 0.3
TRAIN_MAX_VARIANCE = 6.0
CLIP_NORM = 10.0
LOG_SCALE_BOUND = 3.0
WEIGHTS_FILE = Path(__file__).with_name("fkp_x2.pt")


def gaussian_kernels(variances: torch.Tensor, theta: torch.Tensor, size: int = KERNEL_SIZE) -> torch.Tensor:
    """Anisotropic Gaussians `(B, size, size)` (sum 1, x2-aligned) from eigenvalues `(B, 2)` and angles `(B,)`."""
    cos, sin = torch.cos(theta), torch.sin(theta)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
    inverse = rotation @ torch.diag_embed(1 / variances) @ rotation.transpose(1, 2)
    offsets = torch.arange(size, dtype=variances.dtype) - wanted_centre(size, 2)
    d = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), -1)  # (size, size, 2) as (row, col)
    kernel = torch.exp(-0.5 * torch.einsum("hwi,bij,hwj->bhw", d, inverse, d))
    return kernel / kernel.sum(dim=(1, 2), keepdim=True)


def random_kernels(count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` training kernels `(count, 11, 11)` float64 from the widened DIV2KRK family."""
    variances = TRAIN_MIN_VARIANCE + (TRAIN_MAX_VARIANCE - TRAIN_MIN_VARIANCE) * torch.rand(
        count, 2, generator=generator, dtype=torch.float64)
    theta = math.pi * torch.rand(count, generator=generator, dtype=torch.float64)
    return gaussian_kernels(variances, theta)


def _normaliser() -> float:
    """The highest tap any training kernel can have, plus 0.01, so that normalised taps stay below 1.

    The peak is highest for the narrowest minor axis at angles that put the half-pixel centre
    along the wide axis, so the extreme shapes are searched over angles, not just the isotropic one.
    """
    theta = torch.linspace(0, math.pi, 181, dtype=torch.float64)
    variances = torch.tensor([TRAIN_MIN_VARIANCE, TRAIN_MAX_VARIANCE], dtype=torch.float64).expand(181, 2)
    narrow = torch.full((181, 2), TRAIN_MIN_VARIANCE, dtype=torch.float64)
    return float(torch.cat([gaussian_kernels(variances, theta), gaussian_kernels(narrow, theta)]).max()) + 0.01


class _Coupling(nn.Module):
    """Affine coupling: the taps where `mask` is 1 pass through and set scale and shift of the others."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

        def net(activation: type[nn.Module]) -> nn.Sequential:
            return nn.Sequential(nn.Linear(DIM, HIDDEN), activation(), nn.Linear(HIDDEN, HIDDEN), activation(),
                                 nn.Linear(HIDDEN, DIM))

        self.scale, self.shift = net(nn.Tanh), net(nn.ReLU)

    def _log_scale(self, kept: torch.Tensor) -> torch.Tensor:
        # Softly bounded to +-LOG_SCALE_BOUND: unbounded scales overflow exp() within a few hundred steps.
        return LOG_SCALE_BOUND * torch.tanh(self.scale(kept) / LOG_SCALE_BOUND)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data side -> latent side, with log|det| `(B,)`."""
        kept = x * self.mask
        log_s, t = self._log_scale(kept), self.shift(kept)
        free = 1 - self.mask
        return kept + free * (x - t) * torch.exp(-log_s), -(free * log_s).sum(1)

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        kept = u * self.mask
        return kept + (1 - self.mask) * (u * torch.exp(self._log_scale(kept)) + self.shift(kept))


class _BatchNorm(nn.Module):
    """BatchNorm as a flow layer (batch statistics in training, running ones in eval)."""

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(DIM))
        self.beta = nn.Parameter(torch.zeros(DIM))
        self.register_buffer("running_mean", torch.zeros(DIM))
        self.register_buffer("running_var", torch.ones(DIM))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            mean, var = x.mean(0), x.var(0)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean) / torch.sqrt(var + self.eps) * self.log_gamma.exp() + self.beta
        return y, (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        scale = torch.exp(-self.log_gamma) * torch.sqrt(self.running_var + self.eps)
        return (y - self.beta) * scale + self.running_mean


class KernelFlow(nn.Module):
    """The flow: `log_prob(kernels)` for training, `decode(latents)` for use (eval mode)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("normaliser", torch.tensor(_normaliser()))
        mask = torch.arange(DIM) % 2
        layers: list[nn.Module] = []
        for _ in range(BLOCKS):
            layers += [_Coupling(mask.float()), _BatchNorm()]
            mask = 1 - mask
        self.layers = nn.ModuleList(layers)

    def to_flow_space(self, kernels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Kernels `(B, 11, 11)` -> dequantised logits `(B, 121)`."""
        v = (kernels.reshape(-1, DIM).clamp(min=0) / self.normaliser).clamp(max=1 - 2 * DEQUANTISE)
        v = v + torch.rand(v.shape, generator=generator, dtype=v.dtype) * DEQUANTISE
        v = ALPHA + (1 - 2 * ALPHA) * v
        return torch.log(v) - torch.log1p(-v)

    def log_prob(self, logits: torch.Tensor) -> torch.Tensor:
        """Log density `(B,)` of flow-space points `(B, 121)`."""
        total = torch.zeros(logits.shape[0], dtype=logits.dtype)
        h = logits
        for layer in self.layers:
            h, log_det = layer(h)
            total = total + log_det
        return total - 0.5 * (h.square() + math.log(2 * math.pi)).sum(1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents `(B, 121)` -> kernels `(B, 11, 11)`, non-negative, sum 1 (differentiable)."""
        h = latents
        for layer in reversed(self.layers):
            h = layer.inverse(h)
        taps = (torch.sigmoid(h) - ALPHA) / (1 - 2 * ALPHA)
        kernels = taps.clamp(min=0).reshape(-1, KERNEL_SIZE, KERNEL_SIZE)
        return kernels / kernels.sum(dim=(1, 2), keepdim=True)


def train_flow(steps: int = 2000, batch: int = 128, lr: float = 5e-4, seed: int = 0, log_every: int = 0) -> KernelFlow:
    """Fit a `KernelFlow` by maximum likelihood on fresh synthetic kernels; returned in eval mode.

    Cosine-decayed Adam with gradient clipping (the paper's 100 epochs x 50k kernels at lr 1e-4
    take hours on a CPU); early steps without clipping can blow the coupling scales up to NaN.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    flow = KernelFlow()
    optimiser = torch.optim.Adam(flow.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for step in range(steps):
        logits = flow.to_flow_space(random_kernels(batch, generator), generator).float()
        loss = -flow.log_prob(logits).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(flow.parameters(), CLIP_NORM)
        optimiser.step()
        schedule.step()
        if log_every and step % log_every == 0:
            print(f"step {step}: nll {loss.item():.1f}")
    return flow.eval()


@functools.cache
def load_flow() -> KernelFlow:
    """The shipped flow (package data `fkp_x2.pt`), frozen, in eval mode."""
    from realsr_fast.errors import RealSRError

    if not WEIGHTS_FILE.is_file():
        raise RealSRError(f"the kernel prior's weights are missing ({WEIGHTS_FILE}); rebuild them with "
                          "`python -m realsr_fast.kernel_estimation.kernelgan.flow` or reinstall realsr_fast")
    flow = KernelFlow()
    flow.load_state_dict(torch.load(WEIGHTS_FILE, map_location="cpu", weights_only=True))
    for p in flow.parameters():
        p.requires_grad_(False)
    return flow.eval()


if __name__ == "__main__":  # rebuild the shipped weights
    trained = train_flow(log_every=250)
    torch.save(trained.state_dict(), WEIGHTS_FILE)
    print(f"wrote {WEIGHTS_FILE}")
