"""RRDBNet's fp32 forward on the CPU with its LR-resolution 3x3 convolutions as Winograd F(6x6, 3x3).

The 23-block trunk holds about 93 % of RRDBNet's multiply-adds at x4, all in 3x3 convolutions at
the input's resolution. As Winograd F(6x6, 3x3) (docs/winograd.md) each takes 5x fewer
multiplications: the compiled ops transform 8x8 input windows and 6x6 output tiles
(`realsr_fast.ops.winograd_*`), and a batched GEMM (64 positions x tiles x channels) does the
products. Inside a dense block each feature map is transformed once and its transform reused by
every later convolution (the concatenation becomes one wider GEMM), and the LeakyReLUs, biases and
residual sums run inside the output transform. The HR-resolution layers (upsampling, HRconv,
conv_last) and conv_first (3 input channels) stay stock PyTorch convolutions.

fp32 arithmetic with more rounding: 110.7 dB PSNR from the stock forward over the whole default
model (>= 50 dB asserted, tests/test_winograd.py); the whole network 1.43x the stock forward at
128x128 and 1.82x at 256x256 on an AVX2 EPYC (docs/winograd.md, "Speed").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from realsr_fast.models.rrdbnet import LRELU_SLOPE, RESIDUAL_SCALE, RRDBNet
from realsr_fast.ops import (
    WINOGRAD_CHANNEL_MULTIPLE,
    WINOGRAD_WINDOW,
    winograd_input_transform,
    winograd_kernels,
    winograd_output_transform,
    winograd_tile_count,
)

POINTS = WINOGRAD_WINDOW**2


def supports_winograd(network: RRDBNet) -> bool:
    """Whether the trunk's widths suit the Winograd ops (nf and gc multiples of 8)."""
    return network.nf % WINOGRAD_CHANNEL_MULTIPLE == 0 and network.gc % WINOGRAD_CHANNEL_MULTIPLE == 0


class WinogradConv:
    """One 3x3, stride-1, padding-1 convolution in the Winograd domain: its transformed kernels
    (64, Cin, Cout) and its bias."""

    def __init__(self, conv: nn.Conv2d) -> None:
        self.weight = winograd_kernels(conv.weight)
        self.bias = conv.bias.detach().float().contiguous()
        self.out_channels = self.weight.shape[2]


class Workspace:
    """Buffers for one input shape, kept between tiles (fresh pages cost more than the work on them).

    `transformed` (64, T, nf + 4 gc) holds a dense block's transformed features side by side; its
    rows are one tile longer than T so that the 64 planes do not start at addresses a multiple of
    4 KiB apart (which made the input transform 1.5x slower).
    """

    def __init__(self, batch: int, height: int, width: int, nf: int, gc: int) -> None:
        tiles = winograd_tile_count(batch, height, width)
        self.transformed = torch.empty(POINTS, tiles + 1, nf + 4 * gc)[:, :tiles]
        self.products = {c: torch.empty(POINTS, tiles + 1, c)[:, :tiles] for c in {nf, gc}}
        self.maps = [torch.empty(batch, height, width, nf) for _ in range(4)]
        self.growth = torch.empty(batch, height, width, gc)


class WinogradRRDBNet:
    """`network`'s forward, fp32 on the CPU: (B, 3, h, w) float32 -> (B, 3, s*h, s*w), unclamped.

    Needs `supports_winograd(network)`. The network is read once here (later changes to it are
    not seen); the HR layers run on a channels-last copy of it.
    """

    def __init__(self, network: RRDBNet) -> None:
        if not supports_winograd(network):
            raise ValueError(f"Winograd RRDBNet needs nf and gc multiples of {WINOGRAD_CHANNEL_MULTIPLE}, "
                             f"got {network.nf} and {network.gc}")
        self.nf, self.gc = network.nf, network.gc
        self.network = network  # conv_first and the HR layers
        self.blocks = [[[WinogradConv(getattr(rdb, f"conv{k}")) for k in range(1, 6)]
                        for rdb in (rrdb.RDB1, rrdb.RDB2, rrdb.RDB3)] for rrdb in network.RRDB_trunk]
        self.trunk_conv = WinogradConv(network.trunk_conv)
        self._workspace: tuple[tuple[int, int, int], Workspace] | None = None

    def _workspace_for(self, batch: int, height: int, width: int) -> Workspace:
        shape = (batch, height, width)
        if self._workspace is None or self._workspace[0] != shape:
            self._workspace = None  # free the old buffers first
            self._workspace = (shape, Workspace(batch, height, width, self.nf, self.gc))
        return self._workspace[1]

    def _conv(self, conv: WinogradConv, ws: Workspace, in_channels: int, out: torch.Tensor, *,
              negative_slope: float | None = None, residual: torch.Tensor | None = None,
              residual_scale: float = 1.0) -> None:
        """`out` (B, h, w, Cout) <- conv over the first `in_channels` transformed channels."""
        products = ws.products[conv.out_channels]
        torch.bmm(ws.transformed[:, :, :in_channels], conv.weight, out=products)
        winograd_output_transform(products, conv.bias, out, negative_slope=negative_slope, residual=residual,
                                  residual_scale=residual_scale)

    def _dense_block(self, convs: list[WinogradConv], ws: Workspace, x: torch.Tensor, out: torch.Tensor) -> None:
        """out = x + 0.2 conv5(cat(x, x1..x4)), each x_k = lrelu(conv_k(cat(x, x1..x_{k-1})))."""
        winograd_input_transform(x, ws.transformed, 0)
        channels = self.nf
        for conv in convs[:4]:
            self._conv(conv, ws, channels, ws.growth, negative_slope=LRELU_SLOPE)
            winograd_input_transform(ws.growth, ws.transformed, channels)
            channels += self.gc
        self._conv(convs[4], ws, channels, out, residual=x, residual_scale=RESIDUAL_SCALE)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        net = self.network
        batch, _, height, width = x.shape
        ws = self._workspace_for(batch, height, width)
        first, trunk, a, b = ws.maps
        first.copy_(net.conv_first(x.float()).permute(0, 2, 3, 1))
        trunk.copy_(first)
        for rrdb in self.blocks:
            self._dense_block(rrdb[0], ws, trunk, a)
            self._dense_block(rrdb[1], ws, a, b)
            self._dense_block(rrdb[2], ws, b, a)
            trunk.add_(a, alpha=RESIDUAL_SCALE)
        winograd_input_transform(trunk, ws.transformed, 0)
        self._conv(self.trunk_conv, ws, self.nf, a, residual=first)
        fea = a.permute(0, 3, 1, 2)  # NCHW view, channels-last strides
        for i in range(1, net.num_upsamples + 1):
            upconv = getattr(net, f"upconv{i}")
            fea = F.leaky_relu(upconv(F.interpolate(fea, scale_factor=2, mode="nearest")), LRELU_SLOPE, inplace=True)
        return net.conv_last(F.leaky_relu(net.HRconv(fea), LRELU_SLOPE, inplace=True))
