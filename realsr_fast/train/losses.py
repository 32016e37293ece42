"""RealSR's losses, as ESRGAN's `SRGAN_model.py` computes them (docs/METHOD.md §7).

Generator: `pixel_weight * L1(SR, HR) + perceptual_weight * L1(VGG(SR), VGG(HR)) + gan_weight * RaGAN_G`
(weights 0.01, 1, 0.005), or the pixel term alone in the PSNR mode. Discriminator: RaGAN_D, unweighted.
The relativistic-average GAN terms use BCE with logits against all-ones / all-zeros targets:

    RaGAN_G = (BCE(D(HR) - mean D(SR), 0) + BCE(D(SR) - mean D(HR), 1)) / 2    (D(HR) detached)
    RaGAN_D = (BCE(D(HR) - mean D(SR), 1) + BCE(D(SR) - mean D(HR), 0)) / 2    (SR detached)

Logits are compared in float32 whatever precision the networks ran in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _bce(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def ragan_generator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """ESRGAN's generator RaGAN term (unweighted). `real_logits` should be detached by the caller.

    Args:
        real_logits: D(HR), any shape (`(B, 1, h, w)` PatchGAN, `(B, 1)` VGG-128).
        fake_logits: D(SR), the same shape.
    """
    real, fake = real_logits.float(), fake_logits.float()
    return (_bce(real - fake.mean(), False) + _bce(fake - real.mean(), True)) / 2


def ragan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """ESRGAN's discriminator RaGAN loss: D(HR) and D(SR.detach()), each of any shape."""
    real, fake = real_logits.float(), fake_logits.float()
    return (_bce(real - fake.mean(), True) + _bce(fake - real.mean(), False)) / 2


class PerceptualLoss(nn.Module):
    """L1 between VGG features of SR and HR `(B, 3, H, W)` in [0, 1]; HR features carry no gradient."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(hr)
        return F.l1_loss(self.features(sr).float(), target.float())


@dataclass
class LossWeights:
    pixel: float = 0.01
    perceptual: float = 1.0
    gan: float = 0.005


def generator_losses(
    sr: torch.Tensor,
    hr: torch.Tensor,
    weights: LossWeights,
    perceptual: PerceptualLoss | None = None,
    real_logits: torch.Tensor | None = None,
    fake_logits: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The weighted generator terms: `pixel`, and with a perceptual net and logits, `perceptual` and `gan`.

    Returns a dict of 0-d tensors; `total` is their sum (the PSNR mode passes neither the
    perceptual net nor logits, so `total` is the weighted pixel loss).
    """
    losses = {"pixel": weights.pixel * F.l1_loss(sr.float(), hr.float())}
    if perceptual is not None:
        losses["perceptual"] = weights.perceptual * perceptual(sr, hr)
    if real_logits is not None and fake_logits is not None:
        losses["gan"] = weights.gan * ragan_generator_loss(real_logits.detach(), fake_logits)
    losses["total"] = sum(losses.values())
    return losses
