"""The tile transforms of a Winograd F(6x6, 3x3) or F(4x4, 3x3) convolution (docs/winograd.md) and
the batched GEMM between them, for RRDBNet inference on the CPU (CPU only, no gradient), the kernel
transform in plain PyTorch, and the ops' fakes.

Every function takes `tile`, the output tile side: 6 for F(6x6, 3x3) (the fewest multiplications),
4 for F(4x4, 3x3) (smaller coefficients: less of a bf16 GEMM's rounding reaches the output). A tile
of side m reads an (m + 2) x (m + 2) input window and has (m + 2)^2 points."""
from __future__ import annotations

from typing import Optional

import torch

import realsr_fast.ops._library  # noqa: F401  (loads the compiled library, which defines the ops)
from realsr_fast.errors import RealSRError

#: G of Winograd F(m x m, 3x3) by output tile side m, the kernel transform U = G g G^T (Lavin & Gray
#: 2016). F(6x6, 3x3): the points 0, 1, -1, 2, -2, 1/2, -1/2, infinity; F(4x4, 3x3): the paper's
#: matrix, points 0, 1, -1, 2, -2, infinity. The input and output transforms B^T and A^T are in
#: csrc/winograd.h; all of them in docs/winograd.md.
WINOGRAD_KERNEL_TRANSFORMS = {
    6: ((1, 0, 0), (-2 / 9, -2 / 9, -2 / 9), (-2 / 9, 2 / 9, -2 / 9),
        (1 / 90, 1 / 45, 2 / 45), (1 / 90, -1 / 45, 2 / 45),
        (32 / 45, 16 / 45, 8 / 45), (32 / 45, -16 / 45, 8 / 45), (0, 0, 1)),
    4: ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
}
#: Channels per vector: the ops need a multiple of it.
WINOGRAD_CHANNEL_MULTIPLE = 8


def winograd_points(tile: int) -> int:
    """P, the points of an output tile of side `tile`: its (tile + 2)^2 input window."""
    return (tile + 2) ** 2


def winograd_kernels(weight: torch.Tensor, tile: int = 6) -> torch.Tensor:
    """A 3x3 convolution's weight in the Winograd domain: ``(Cout, Cin, 3, 3) -> (P, Cin, Cout)``
    float32, ``U[n p + q, i, o] = (G w[o, i] G^T)[p, q]`` with n = tile + 2, computed in float64.

    As one product ``(G kron G) (P, 9) @ vec(w) (9, Cout * Cin)``: a network's few hundred kernels
    are transformed at every model load, and one GEMM per kernel is several times quicker than the
    two small products per (o, i) pair of the literal form."""
    g = torch.tensor(WINOGRAD_KERNEL_TRANSFORMS[tile], dtype=torch.float64)
    out_channels, in_channels = weight.shape[:2]
    taps = weight.detach().to("cpu", torch.float64).permute(2, 3, 1, 0).reshape(9, in_channels * out_channels)
    u = torch.kron(g, g) @ taps  # (P, Cin * Cout), already in the result's order
    return u.reshape(winograd_points(tile), in_channels, out_channels).float()


def winograd_tile_count(batch: int, height: int, width: int, tile: int = 6) -> int:
    """T, the number of tile x tile output tiles of a (batch, height, width) image."""
    return batch * -(-height // tile) * -(-width // tile)


def winograd_input_transform(x: torch.Tensor, out: torch.Tensor, channel_offset: int = 0, tile: int = 6) -> None:
    """Writes ``B^T d B`` of every (tile + 2)-square window (tile x tile output tiles, one pixel of
    zero padding) of ``x`` into channels ``[channel_offset, channel_offset + C)`` of ``out``. CPU,
    for inference (no gradient); the arithmetic is float32, ``out`` float32 or bfloat16 (rounded
    to nearest even).

    Args:
        x: ``(N, H, W, C)`` float32, contiguous NHWC, C a multiple of 8.
        out: ``(P, T, C')`` with ``P = winograd_points(tile)``, ``T = winograd_tile_count(N, H, W,
            tile)`` (tiles in n, row, column order) and unit channel stride;
            ``out[n p + q, t, c] = (B^T d_{t,c} B)[p, q]``, n = tile + 2.
    """
    try:
        torch.ops.realsr_fast.winograd_input_transform(x, out, channel_offset, tile)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def winograd_output_transform(m: torch.Tensor, bias: torch.Tensor, out: torch.Tensor, *,
                              negative_slope: Optional[float] = None, residual: Optional[torch.Tensor] = None,
                              residual_scale: float = 1.0, tile: int = 6) -> None:
    """Writes ``residual + residual_scale * act(A^T M A + bias)`` of every tile into ``out``, with
    ``act`` a LeakyReLU of ``negative_slope`` (none when None). CPU, for inference; the arithmetic
    and ``out`` are float32, ``m`` float32 or bfloat16.

    Args:
        m: ``(P, T, C)`` products summed over input channels (`winograd_products` of the
            transformed input and `winograd_kernels`), unit channel stride.
        bias: ``(C,)``.
        out: ``(N, H, W, C)`` contiguous NHWC with ``winograd_tile_count(N, H, W, tile) == T``; tiles
            are cropped at its right and bottom edges.
        residual: None or a tensor like ``out`` (may be ``out`` itself).
    """
    try:
        torch.ops.realsr_fast.winograd_output_transform(
            m, bias, out, 0.0 if negative_slope is None else negative_slope, negative_slope is not None,
            residual, residual_scale, tile)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def winograd_products(transformed: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> None:
    """Writes ``out[k] = transformed[k] @ weight[k]`` for the P points: the products between the two
    transforms. CPU, float32 or bfloat16 (all three alike), for inference.

    A batched GEMM (`torch.bmm`) that reads `transformed` in place: a dense block's slice
    ``(P, T, Cin)`` of a wider buffer has rows longer than Cin, which `torch.bmm` in bfloat16 first
    copies; here each point is one 2-D product, the points shared among the threads.

    Args:
        transformed: ``(P, T, Cin)``, unit channel stride.
        weight: ``(P, Cin, Cout)`` (`winograd_kernels`).
        out: ``(P, T, Cout)``, unit channel stride.
    """
    try:
        torch.ops.realsr_fast.winograd_products(transformed, weight, out)
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def _winograd_input_transform_fake(x, out, channel_offset, tile):
    return None


def _winograd_output_transform_fake(m, bias, out, negative_slope, leaky_relu, residual, residual_scale, tile):
    return None


def _winograd_products_fake(transformed, weight, out):
    return None


#: Fake (meta) implementations for torch.compile, registered by `realsr_fast.ops` (see its docstring).
FAKES = {
    "realsr_fast::winograd_input_transform": _winograd_input_transform_fake,
    "realsr_fast::winograd_output_transform": _winograd_output_transform_fake,
    "realsr_fast::winograd_products": _winograd_products_fake,
}
