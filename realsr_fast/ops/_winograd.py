"""The tile transforms of a Winograd F(6x6, 3x3) convolution (docs/winograd.md), for fp32 RRDBNet
inference on the CPU (CPU only, no gradient; the products between them are a stock batched GEMM),
the kernel transform in plain PyTorch, and the transforms' fakes."""
from __future__ import annotations

from typing import Optional

import torch

import realsr_fast.ops._library  # noqa: F401  (loads the compiled library, which defines the ops)
from realsr_fast.errors import RealSRError

#: G of Winograd F(6x6, 3x3), the kernel transform U = G g G^T (Lavin & Gray 2016; the points 0, 1,
#: -1, 2, -2, 1/2, -1/2, infinity; the input and output transforms B^T and A^T are in
#: csrc/winograd.h, all three in docs/winograd.md).
WINOGRAD_KERNEL_TRANSFORM = (
    (1, 0, 0), (-2 / 9, -2 / 9, -2 / 9), (-2 / 9, 2 / 9, -2 / 9),
    (1 / 90, 1 / 45, 2 / 45), (1 / 90, -1 / 45, 2 / 45),
    (32 / 45, 16 / 45, 8 / 45), (32 / 45, -16 / 45, 8 / 45), (0, 0, 1),
)
#: Output tile side, input window side, and channels per vector (the ops need a multiple of it).
WINOGRAD_TILE, WINOGRAD_WINDOW, WINOGRAD_CHANNEL_MULTIPLE = 6, 8, 8


def winograd_kernels(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution's weight in the Winograd domain: ``(Cout, Cin, 3, 3) -> (64, Cin, Cout)``
    float32, ``U[8p + q, i, o] = (G w[o, i] G^T)[p, q]``, computed in float64.

    As one product ``(G kron G) (64, 9) @ vec(w) (9, Cout * Cin)``: a network's few hundred kernels
    are transformed at every model load, and one GEMM per kernel is several times quicker than the
    two small products per (o, i) pair of the literal form."""
    g = torch.tensor(WINOGRAD_KERNEL_TRANSFORM, dtype=torch.float64)
    out_channels, in_channels = weight.shape[:2]
    taps = weight.detach().to("cpu", torch.float64).permute(2, 3, 1, 0).reshape(9, in_channels * out_channels)
    u = torch.kron(g, g) @ taps  # (64, Cin * Cout), already in the result's order
    return u.reshape(WINOGRAD_WINDOW**2, in_channels, out_channels).float()


def winograd_tile_count(batch: int, height: int, width: int) -> int:
    """T, the number of 6x6 output tiles of a (batch, height, width) image."""
    return batch * -(-height // WINOGRAD_TILE) * -(-width // WINOGRAD_TILE)


def winograd_input_transform(x: torch.Tensor, out: torch.Tensor, channel_offset: int = 0) -> None:
    """Writes ``B^T d B`` of every 8x8 window (6x6 output tiles, one pixel of zero padding) of ``x``
    into channels ``[channel_offset, channel_offset + C)`` of ``out``. CPU, float32, for inference
    (no gradient).

    Args:
        x: ``(N, H, W, C)`` contiguous NHWC, C a multiple of 8.
        out: ``(64, T, C')`` with ``T = winograd_tile_count(N, H, W)`` (tiles in n, row, column
            order) and unit channel stride; ``out[8p + q, t, c] = (B^T d_{t,c} B)[p, q]``.
    """
    try:
        torch.ops.realsr_fast.winograd_input_transform(x, out, channel_offset)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def winograd_output_transform(m: torch.Tensor, bias: torch.Tensor, out: torch.Tensor, *,
                              negative_slope: Optional[float] = None, residual: Optional[torch.Tensor] = None,
                              residual_scale: float = 1.0) -> None:
    """Writes ``residual + residual_scale * act(A^T M A + bias)`` of every tile into ``out``, with
    ``act`` a LeakyReLU of ``negative_slope`` (none when None). CPU, float32, for inference.

    Args:
        m: ``(64, T, C)`` products summed over input channels (``bmm`` of the transformed input
            and `winograd_kernels`), unit channel stride.
        bias: ``(C,)``.
        out: ``(N, H, W, C)`` contiguous NHWC with ``winograd_tile_count(N, H, W) == T``; tiles
            are cropped at its right and bottom edges.
        residual: None or a tensor like ``out`` (may be ``out`` itself).
    """
    try:
        torch.ops.realsr_fast.winograd_output_transform(
            m, bias, out, 0.0 if negative_slope is None else negative_slope, negative_slope is not None,
            residual, residual_scale)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def _winograd_input_transform_fake(x, out, channel_offset):
    return None


def _winograd_output_transform_fake(m, bias, out, negative_slope, leaky_relu, residual, residual_scale):
    return None


#: Fake (meta) implementations for torch.compile, registered by `realsr_fast.ops` (see its docstring).
FAKES = {
    "realsr_fast::winograd_input_transform": _winograd_input_transform_fake,
    "realsr_fast::winograd_output_transform": _winograd_output_transform_fake,
}
