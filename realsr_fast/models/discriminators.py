"""The discriminators RealSR trains against (docs/METHOD.md §7).

- :class:`NLayerDiscriminator`: pix2pix's PatchGAN (the DPED config and the paper): 4x4 convs with
  strides 2, 2, 2, 1, 1, BatchNorm on all but the first and last, LeakyReLU 0.2, a 70x70 receptive
  field with n_layers 3. `(B, 3, H, W) -> (B, 1, H/8 - 2, W/8 - 2)` logits, one per patch.
- :class:`VGG128Discriminator`: ESRGAN's `Discriminator_VGG_128` (what the DF2K config used):
  ten convs (3x3 then 4x4 stride 2, five times), BatchNorm, two linear layers.
  `(B, 3, 128, 128) -> (B, 1)` logits; it takes 128x128 inputs only.
"""
from __future__ import annotations

import torch
from torch import nn

from realsr_fast.errors import RealSRError

LRELU_SLOPE = 0.2
DISCRIMINATORS: tuple[str, ...] = ("patchgan", "vgg128")


class NLayerDiscriminator(nn.Module):
    """PatchGAN: `(B, in_nc, H, W) -> (B, 1, h, w)` real/fake logits of overlapping patches.

    Channels ndf, 2 ndf, 4 ndf, 8 ndf (capped at 8 ndf), then 1. The convs before BatchNorm have
    no bias (pix2pix's `use_bias = False` for BatchNorm).
    """

    def __init__(self, in_nc: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise RealSRError(f"a PatchGAN needs at least 1 layer, got n_layers={n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_nc, ndf, 4, 2, 1), nn.LeakyReLU(LRELU_SLOPE, True)]
        channels = ndf
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            out = ndf * min(2 ** n, 8)
            layers += [nn.Conv2d(channels, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(LRELU_SLOPE, True)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class VGG128Discriminator(nn.Module):
    """ESRGAN's VGG-style discriminator: `(B, in_nc, 128, 128) -> (B, 1)` logits.

    Parameter names follow ESRGAN's `Discriminator_VGG_128` (`conv0_0`, `bn0_1`, ..., `linear2`).
    """

    SIZE = 128

    def __init__(self, in_nc: int = 3, nf: int = 64) -> None:
        super().__init__()
        widths = [nf, nf * 2, nf * 4, nf * 8, nf * 8]
        self.conv0_0 = nn.Conv2d(in_nc, nf, 3, 1, 1)
        self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(nf)
        for level in range(1, 5):
            cin, cout = widths[level - 1], widths[level]
            setattr(self, f"conv{level}_0", nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
            setattr(self, f"bn{level}_0", nn.BatchNorm2d(cout))
            setattr(self, f"conv{level}_1", nn.Conv2d(cout, cout, 4, 2, 1, bias=False))
            setattr(self, f"bn{level}_1", nn.BatchNorm2d(cout))
        self.linear1 = nn.Linear(nf * 8 * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(LRELU_SLOPE, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.SIZE, self.SIZE):
            raise RealSRError(f"the VGG-128 discriminator takes {self.SIZE}x{self.SIZE} patches, got "
                              f"{x.shape[-2]}x{x.shape[-1]}; set data.patch=128 or use the patchgan")
        fea = self.lrelu(self.conv0_0(x))
        fea = self.lrelu(self.bn0_1(self.conv0_1(fea)))
        for level in range(1, 5):
            for half in (0, 1):
                conv, bn = getattr(self, f"conv{level}_{half}"), getattr(self, f"bn{level}_{half}")
                fea = self.lrelu(bn(conv(fea)))
        fea = self.lrelu(self.linear1(fea.flatten(1)))
        return self.linear2(fea)


def build_discriminator(arch: str, ndf: int = 64, n_layers: int = 3) -> nn.Module:
    """`patchgan` -> :class:`NLayerDiscriminator`, `vgg128` -> :class:`VGG128Discriminator`."""
    if arch == "patchgan":
        return NLayerDiscriminator(3, ndf, n_layers)
    if arch == "vgg128":
        return VGG128Discriminator(3, ndf)
    raise RealSRError(f"unknown discriminator {arch!r}; choose one of {', '.join(DISCRIMINATORS)}")
