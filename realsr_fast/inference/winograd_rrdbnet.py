"""RRDBNet's forward on the CPU with its LR-resolution 3x3 convolutions as Winograd convolutions.

The 23-block trunk holds most of RRDBNet's multiply-adds at x4, all in 3x3 convolutions at the
input's resolution. As Winograd F(m x m, 3x3) each takes several times fewer multiplications (the
counts are in docs/winograd.md): the compiled ops transform (m+2)-square input windows and m x m
output tiles (`realsr_fast.ops.winograd_*`), and a batched GEMM (P points x tiles x channels) does
the products. Inside a dense block each feature map is transformed once and its transform reused by
every later convolution (the concatenation becomes one wider GEMM), and the LeakyReLUs, biases and
residual sums run inside the output transform. The HR-resolution layers (upsampling, HRconv,
conv_last) and conv_first (3 input channels) stay stock PyTorch convolutions.

The GEMMs run in fp32 as F(6x6, 3x3), the fewest multiplications, or in bf16 (where the CPU
computes bf16 natively) as F(4x4, 3x3), whose smaller coefficients carry less of bf16's rounding
into the output: the transforms then write and read bf16 (their arithmetic stays fp32), the kernels
are kept in bf16, and the stock layers run in bf16; the trunk's feature maps stay fp32 either way.
The distance of each from the stock fp32 forward and their speed are in docs/winograd.md
(tests/test_winograd.py bounds the distances).
"""
from __future__ import annotations

import contextlib
import copy
import math
import threading
from collections.abc import Iterator

import torch
from torch import nn

from realsr_fast.models.rrdbnet import LRELU_SLOPE, RESIDUAL_SCALE, RRDBNet, hr_tail
from realsr_fast.ops import (
    WINOGRAD_CHANNEL_MULTIPLE,
    WINOGRAD_KERNEL_TRANSFORMS,
    winograd_input_transform,
    winograd_kernels,
    winograd_output_transform,
    winograd_points,
    winograd_products,
    winograd_tile_count,
)


def supports_winograd(network: RRDBNet) -> bool:
    """Whether the trunk's widths suit the Winograd ops (nf and gc multiples of 8)."""
    return network.nf % WINOGRAD_CHANNEL_MULTIPLE == 0 and network.gc % WINOGRAD_CHANNEL_MULTIPLE == 0


#: The output tile side of the Winograd convolutions for each dtype the GEMMs may run in.
TILE_BY_GEMM_DTYPE = {torch.float32: 6, torch.bfloat16: 4}


class WinogradConv:
    """One 3x3, stride-1, padding-1 convolution in the Winograd domain: its transformed kernels
    (P, Cin, Cout) in the GEMM's dtype, and its bias (fp32)."""

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype, tile: int) -> None:
        self.weight = winograd_kernels(conv.weight, tile).to(dtype)
        self.bias = conv.bias.detach().float().contiguous()
        self.out_channels = self.weight.shape[2]


class Workspace:
    """Buffers for one input shape, reused by the tiles of an image (fresh pages cost more than the
    work on them).

    `transformed` (P, T, nf + 4 gc) holds a dense block's transformed features side by side; its
    rows are one tile longer than T so that the P planes do not start at addresses a multiple of
    4 KiB apart (cache-set conflicts made the input transform slower). It and the products are in
    the GEMM's `dtype`; the feature maps (B, h, w, C) are fp32.
    """

    def __init__(self, batch: int, height: int, width: int, nf: int, gc: int, dtype: torch.dtype,
                 tile: int) -> None:
        self.shape = (batch, height, width)
        tiles, points = winograd_tile_count(batch, height, width, tile), winograd_points(tile)
        self.transformed = torch.empty(points, tiles + 1, nf + 4 * gc, dtype=dtype)[:, :tiles]
        self.products = {c: torch.empty(points, tiles + 1, c, dtype=dtype)[:, :tiles] for c in {nf, gc}}
        self.maps = [torch.empty(batch, height, width, nf) for _ in range(4)]
        self.growth = torch.empty(batch, height, width, gc)

    @property
    def nbytes(self) -> int:
        buffers = [self.transformed, *self.products.values(), *self.maps, self.growth]
        return sum(b.untyped_storage().nbytes() for b in buffers)


def workspace_bytes_per_pixel(nf: int, gc: int, dtype: torch.dtype, tile: int) -> int:
    """Bytes of a `Workspace` per input pixel (an m x m output tile's (m+2)^2 points shared by its
    m^2 pixels)."""
    transformed = winograd_points(tile) * (nf + 4 * gc + sum({nf, gc})) * dtype.itemsize / tile**2
    return math.ceil(transformed) + (4 * nf + gc) * 4


class WorkspacePool:
    """Workspaces lent to one forward at a time, so that threads sharing a network never share
    buffers; an idle one is kept for the next call of the same shape.

    `release()` (after an image) frees the idle workspace when it is larger than `keep_bytes`: a
    large image's buffers are not held while nothing runs, a small one's (video frames, thumbnails)
    are reused.
    """

    def __init__(self, nf: int, gc: int, dtype: torch.dtype, tile: int, keep_bytes: int) -> None:
        self.nf, self.gc, self.dtype, self.tile, self.keep_bytes = nf, gc, dtype, tile, keep_bytes
        self._idle: Workspace | None = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self, batch: int, height: int, width: int) -> Iterator[Workspace]:
        """A workspace for a (batch, height, width) input, owned by the caller inside the block."""
        with self._lock:
            workspace, self._idle = self._idle, None
        if workspace is None or workspace.shape != (batch, height, width):
            workspace = None  # free the old buffers before the new ones are allocated
            workspace = Workspace(batch, height, width, self.nf, self.gc, self.dtype, self.tile)
        try:
            yield workspace
        finally:
            with self._lock:
                self._idle = workspace

    def release(self) -> None:
        """Free the idle workspace if it is larger than `keep_bytes`."""
        with self._lock:
            if self._idle is not None and self._idle.nbytes > self.keep_bytes:
                self._idle = None


#: Idle workspaces up to this size stay allocated between images (those of frames of a small video,
#: about 140x140 px per tile at nf 64); larger ones are freed after each image.
KEEP_WORKSPACE_BYTES = 64 << 20


class WinogradRRDBNet:
    """`network`'s forward on the CPU with its GEMMs and stock layers in `dtype` (fp32 or bf16):
    (B, 3, h, w) float -> (B, 3, s*h, s*w) in `dtype`, unclamped. `tile`: the Winograd output tile
    side, 6 or 4 (default: `TILE_BY_GEMM_DTYPE[dtype]`; the other one is there to be measured).

    Needs `supports_winograd(network)`. The network is read once here (later changes to it are not
    seen): the trunk's kernels are kept transformed, and copies of conv_first and the HR layers
    (channels-last), so dropping `network` afterwards frees all of it. Safe to call from several
    threads at once: each call runs in a workspace of its own (`WorkspacePool`).
    """

    def __init__(self, network: RRDBNet, dtype: torch.dtype = torch.float32, tile: int | None = None) -> None:
        if not supports_winograd(network):
            raise ValueError(f"Winograd RRDBNet needs nf and gc multiples of {WINOGRAD_CHANNEL_MULTIPLE}, "
                             f"got {network.nf} and {network.gc}")
        if dtype not in TILE_BY_GEMM_DTYPE:
            raise ValueError(f"Winograd RRDBNet runs its GEMMs in {tuple(TILE_BY_GEMM_DTYPE)}, not {dtype}")
        self.nf, self.gc, self.dtype = network.nf, network.gc, dtype
        self.tile = TILE_BY_GEMM_DTYPE[dtype] if tile is None else tile
        if self.tile not in WINOGRAD_KERNEL_TRANSFORMS:
            raise ValueError(f"Winograd RRDBNet has output tiles of side {tuple(WINOGRAD_KERNEL_TRANSFORMS)}, "
                             f"not {self.tile}")
        stock = [copy.deepcopy(layer).to(dtype, memory_format=torch.channels_last)
                 for layer in (network.conv_first, *network.upconvs(), network.HRconv, network.conv_last)]
        self.conv_first, *self.upconvs, self.hr_conv, self.conv_last = stock
        self.blocks = [[[WinogradConv(getattr(rdb, f"conv{k}"), dtype, self.tile) for k in range(1, 6)]
                        for rdb in (rrdb.RDB1, rrdb.RDB2, rrdb.RDB3)] for rrdb in network.RRDB_trunk]
        self.trunk_conv = WinogradConv(network.trunk_conv, dtype, self.tile)
        self.workspaces = WorkspacePool(self.nf, self.gc, dtype, self.tile, KEEP_WORKSPACE_BYTES)
        self.workspace_bytes_per_pixel = workspace_bytes_per_pixel(self.nf, self.gc, dtype, self.tile)

    @property
    def resident_bytes(self) -> int:
        """Bytes of weights held: the transformed trunk and the stock layers kept."""
        convs = [conv for rrdb in self.blocks for rdb in rrdb for conv in rdb] + [self.trunk_conv]
        stock = [self.conv_first, *self.upconvs, self.hr_conv, self.conv_last]
        return (sum(c.weight.nbytes + c.bias.nbytes for c in convs)
                + sum(p.nbytes for layer in stock for p in layer.parameters()))

    def release(self) -> None:
        """Free buffers kept for the next call when they are large (`WorkspacePool.release`)."""
        self.workspaces.release()

    def _conv(self, conv: WinogradConv, ws: Workspace, in_channels: int, out: torch.Tensor, *,
              negative_slope: float | None = None, residual: torch.Tensor | None = None,
              residual_scale: float = 1.0) -> None:
        """`out` (B, h, w, Cout) <- conv over the first `in_channels` transformed channels."""
        products = ws.products[conv.out_channels]
        winograd_products(ws.transformed[:, :, :in_channels], conv.weight, products)
        winograd_output_transform(products, conv.bias, out, negative_slope=negative_slope, residual=residual,
                                  residual_scale=residual_scale, tile=self.tile)

    def _dense_block(self, convs: list[WinogradConv], ws: Workspace, x: torch.Tensor, out: torch.Tensor) -> None:
        """out = x + 0.2 conv5(cat(x, x1..x4)), each x_k = lrelu(conv_k(cat(x, x1..x_{k-1})))."""
        winograd_input_transform(x, ws.transformed, 0, self.tile)
        channels = self.nf
        for conv in convs[:4]:
            self._conv(conv, ws, channels, ws.growth, negative_slope=LRELU_SLOPE)
            winograd_input_transform(ws.growth, ws.transformed, channels, self.tile)
            channels += self.gc
        self._conv(convs[4], ws, channels, out, residual=x, residual_scale=RESIDUAL_SCALE)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        with self.workspaces.lend(batch, height, width) as ws:
            first, trunk, a, b = ws.maps
            first.copy_(self.conv_first(x.to(self.dtype)).permute(0, 2, 3, 1))
            trunk.copy_(first)
            for rrdb in self.blocks:
                self._dense_block(rrdb[0], ws, trunk, a)
                self._dense_block(rrdb[1], ws, a, b)
                self._dense_block(rrdb[2], ws, b, a)
                trunk.add_(a, alpha=RESIDUAL_SCALE)
            winograd_input_transform(trunk, ws.transformed, 0, self.tile)
            self._conv(self.trunk_conv, ws, self.nf, a, residual=first)
            fea = a.permute(0, 3, 1, 2).to(self.dtype)  # NCHW, channels-last strides, read before `ws` is lent again
            return hr_tail(fea, self.upconvs, self.hr_conv, self.conv_last)
