"""RRDBNet, the ESRGAN generator that RealSR trains (docs/METHOD.md §7).

Parameter names follow the official Real-SR / xinntao ESRGAN checkpoints (`conv_first`,
`RRDB_trunk.N.RDBm.convk`, `trunk_conv`, `upconv1`, `upconv2`, `HRconv`, `conv_last`), so that
every other layout maps onto it by renaming keys only (see `realsr_fast.models.formats`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from realsr_fast.errors import RealSRError

#: The residual scaling of every dense block and of every RRDB.
RESIDUAL_SCALE = 0.2
#: The negative slope of every LeakyReLU.
LRELU_SLOPE = 0.2
#: ESRGAN scales the Kaiming-normal weights of every dense-block convolution by this at init.
DENSE_INIT_SCALE = 0.1


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing the block input and all earlier outputs; initialised as
    ESRGAN's (Kaiming normal, fan in, x0.1, zero bias); the other RRDBNet convs keep PyTorch's default.

    (B, nf, H, W) -> (B, nf, H, W): x + 0.2 * conv5(cat(x, x1, x2, x3, x4)).
    """

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        # ESRGAN's start for training from scratch (xinntao/ESRGAN and BasicSR RRDBNet_arch,
        # initialize_weights(..., 0.1)): small residual branches keep the 23-block trunk stable.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            if conv.weight.is_meta:  # shapes only (loading weights): nothing to draw, and torch's
                continue             # meta normal_ would import its compiler (seconds)
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(DENSE_INIT_SCALE)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), LRELU_SLOPE, inplace=True))
        return torch.add(x, self.conv5(torch.cat(features, 1)), alpha=RESIDUAL_SCALE)


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and a scaled skip.

    (B, nf, H, W) -> (B, nf, H, W).
    """

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.RDB1 = ResidualDenseBlock(nf, gc)
        self.RDB2 = ResidualDenseBlock(nf, gc)
        self.RDB3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.add(x, self.RDB3(self.RDB2(self.RDB1(x))), alpha=RESIDUAL_SCALE)


class RRDBNet(nn.Module):
    """The ESRGAN generator: (B, in_nc, H, W) -> (B, out_nc, scale*H, scale*W).

    `scale` is a power of two; each factor of two is a nearest-neighbour x2 upsampling followed
    by a conv (`upconv1`, `upconv2`, ...). The output is not clamped. RealSR: nf 64, nb 23,
    gc 32, scale 4 (16,697,987 parameters).
    """

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, nb: int = 23,
                 gc: int = 32, scale: int = 4) -> None:
        super().__init__()
        if scale < 1 or scale & (scale - 1):
            raise RealSRError(f"RRDBNet scale must be a power of two (1, 2, 4, 8), got {scale}")
        self.in_nc, self.out_nc, self.nf, self.nb, self.gc, self.scale = (
            in_nc, out_nc, nf, nb, gc, scale)
        self.conv_first = nn.Conv2d(in_nc, nf, 3, 1, 1)
        self.RRDB_trunk = nn.Sequential(*(RRDB(nf, gc) for _ in range(nb)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        for i in range(1, self.num_upsamples + 1):
            setattr(self, f"upconv{i}", nn.Conv2d(nf, nf, 3, 1, 1))
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, 1, 1)

    @property
    def num_upsamples(self) -> int:
        return int(math.log2(self.scale))

    def config(self) -> dict[str, int]:
        """The constructor arguments, e.g. for checkpoint metadata."""
        return {"in_nc": self.in_nc, "out_nc": self.out_nc, "nf": self.nf, "nb": self.nb,
                "gc": self.gc, "scale": self.scale}

    def upconvs(self) -> list[nn.Conv2d]:
        """The convolutions after each nearest x2 upsampling, in order (`upconv1`, `upconv2`, ...)."""
        return [getattr(self, f"upconv{i}") for i in range(1, self.num_upsamples + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.RRDB_trunk(fea))
        return hr_tail(fea, self.upconvs(), self.HRconv, self.conv_last)


def hr_tail(fea: torch.Tensor, upconvs: list[nn.Conv2d], hr_conv: nn.Conv2d, conv_last: nn.Conv2d) -> torch.Tensor:
    """RRDBNet's layers after the trunk: (B, nf, h, w) -> (B, out_nc, 2^n h, 2^n w) for n upconvs.

    Each upconv follows a nearest x2 upsampling and a LeakyReLU follows it; then HRconv, LeakyReLU and
    conv_last. `fea` may be overwritten (the activations run in place).
    """
    for upconv in upconvs:
        fea = F.leaky_relu(upconv(F.interpolate(fea, scale_factor=2, mode="nearest")), LRELU_SLOPE, inplace=True)
    return conv_last(F.leaky_relu(hr_conv(fea), LRELU_SLOPE, inplace=True))


def parameter_shapes(**config: int) -> dict[str, torch.Size]:
    """Name -> shape of every tensor of `RRDBNet(**config)`'s state dict, in forward order."""
    with torch.device("meta"):
        return {name: t.shape for name, t in RRDBNet(**config).state_dict().items()}
