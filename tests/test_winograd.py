"""The Winograd F(6x6, 3x3) ops and the CPU RRDBNet built on them (fp32 and bf16 GEMMs), against
independent references: the transforms written as the matrices of Lavin & Gray (2016) in float64 numpy, and
stock `F.conv2d` / `RRDBNet.forward` for whole convolutions and networks, on fresh random inputs."""
from __future__ import annotations

import importlib.resources

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from realsr_fast import ops
from realsr_fast.errors import RealSRError
from realsr_fast.inference.winograd_rrdbnet import WinogradRRDBNet, supports_winograd
from realsr_fast.metrics import psnr
from realsr_fast.models.rrdbnet import RRDBNet

# The matrices of F(6x6, 3x3) by the paper's construction (section 4; points 0, 1, -1, 2, -2, 1/2,
# -1/2 and infinity), built here from the points, apart from the op's code: row j of B^T holds
# the coefficients of prod_{l != j} (x - a_l) (row 0 negated; the last row: the product over all).
POINTS = [0, 1, -1, 2, -2, 0.5, -0.5]


def _coefficients(roots: list[float]) -> np.ndarray:
    """Ascending coefficients of prod (x - root), padded to length 8."""
    poly = np.array([1.0])
    for root in roots:
        poly = np.convolve(poly, [-root, 1.0])
    return np.pad(poly, (0, 8 - len(poly)))


BT = np.stack([_coefficients(POINTS[:j] + POINTS[j + 1:]) for j in range(7)] + [_coefficients(POINTS)])
BT[0] *= -1
AT = np.array([[a**i for a in POINTS] + [float(i == 5)] for i in range(6)])
# F(4x4, 3x3) as printed in the paper (section 4.2), points 0, 1, -1, 2, -2 and infinity.
BT4 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float)
AT4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=float)
MATRICES = {6: (BT, AT), 4: (BT4, AT4)}


def windows(x: np.ndarray, tile: int) -> np.ndarray:
    """(N, H, W, C) -> (N, th, tw, n, n, C): the zero-padded n x n input window (n = tile + 2) of each
    tile x tile output tile."""
    n, h, w, c = x.shape
    th, tw = -(-h // tile), -(-w // tile)
    padded = np.zeros((n, tile * th + 2, tile * tw + 2, c))
    padded[:, 1:h + 1, 1:w + 1] = x
    return np.stack([np.stack([padded[:, tile * i:tile * i + tile + 2, tile * j:tile * j + tile + 2]
                               for j in range(tw)], 1) for i in range(th)], 1)


def assert_within_rounding(got: np.ndarray, expected: np.ndarray, magnitude: np.ndarray) -> None:
    """|got - expected| within fp32 rounding of the sum of the terms' magnitudes (the transforms'
    coefficients reach 32, so outputs can be much smaller than the terms that cancel into them)."""
    error = np.abs(got - expected)
    bound = 4e-6 * magnitude + 1e-6
    assert (error <= bound).all(), f"max error {error.max():.3g}, {(error / bound).max():.3g}x the rounding bound"


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))


@pytest.mark.parametrize("tile", [6, 4])
@pytest.mark.parametrize("shape", [(1, 12, 12, 8), (2, 7, 14, 16), (1, 1, 5, 8)])
def test_input_transform_is_bt_d_b_of_every_window(shape, tile, generator) -> None:
    x = torch.randn(shape, generator=generator)
    tiles, points, bt = ops.winograd_tile_count(*shape[:3], tile), ops.winograd_points(tile), MATRICES[tile][0]
    out = torch.full((points, tiles + 3, shape[3] + 24), float("nan"))[:, :tiles]  # padded rows, wider channels
    ops.winograd_input_transform(x, out, channel_offset=16, tile=tile)
    d = windows(x.double().numpy(), tile)
    expected = np.einsum("pa,ntiabc,qb->pqntic", bt, d, bt).reshape(points, tiles, shape[3])
    magnitude = np.einsum("pa,ntiabc,qb->pqntic", abs(bt), abs(d), abs(bt)).reshape(points, tiles, shape[3])
    assert_within_rounding(out[:, :, 16:16 + shape[3]].numpy(), expected, magnitude)
    assert torch.isnan(out[:, :, :16]).all() and torch.isnan(out[:, :, 16 + shape[3]:]).all()


@pytest.mark.parametrize("tile", [6, 4])
@pytest.mark.parametrize("slope", [None, 0.2])
@pytest.mark.parametrize("with_residual", [False, True])
def test_output_transform_is_at_m_a_plus_bias_act_residual(slope, with_residual, tile, generator) -> None:
    n, h, w, c = 2, 13, 6, 16
    tiles, at = ops.winograd_tile_count(n, h, w, tile), MATRICES[tile][1]
    m = torch.randn(ops.winograd_points(tile), tiles + 1, c, generator=generator)[:, :tiles]
    bias = torch.randn(c, generator=generator)
    residual = torch.randn(n, h, w, c, generator=generator) if with_residual else None
    out = torch.empty(n, h, w, c)
    ops.winograd_output_transform(m, bias, out, negative_slope=slope, residual=residual, residual_scale=0.3,
                                  tile=tile)
    def to_image(tiles_of_output: np.ndarray) -> np.ndarray:
        rows, cols = -(-h // tile), -(-w // tile)
        image = tiles_of_output.reshape(n, rows, cols, tile, tile, c).transpose(0, 1, 3, 2, 4, 5)
        return image.reshape(n, tile * rows, tile * cols, c)[:, :h, :w]

    products = m.double().numpy().reshape(tile + 2, tile + 2, tiles, c)
    y = to_image(np.einsum("rp,pqtc,sq->trsc", at, products, at)) + bias.double().numpy()
    magnitude = to_image(np.einsum("rp,pqtc,sq->trsc", abs(at), abs(products), abs(at))) + abs(bias.double().numpy())
    if slope is not None:
        y = np.where(y > 0, y, slope * y)
    if residual is not None:
        y = residual.double().numpy() + 0.3 * y
        magnitude = abs(residual.double().numpy()) + 0.3 * magnitude
    assert_within_rounding(out.numpy(), y, magnitude)


@pytest.mark.parametrize("tile, corner_gain", [(6, 1), (4, 16)])
def test_bf16_input_transform_is_the_fp32_one_rounded_to_nearest_even(tile, corner_gain, generator) -> None:
    x = torch.randn(2, 12, 13, 16, generator=generator)
    # Ties: a lone pixel at the corner of tile (1, 1)'s window reaches V[0][0] times B^T[0][0]^2 (1 or 16,
    # exact); 1 + 2^-8 and 1 + 3 * 2^-8 lie halfway between bf16 neighbours and round to the even one
    # (down, then up; truncation would go down both times).
    x[0] = 0
    x[0, tile - 1, tile - 1, :4] = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), -(1 + 3 * 2**-8)])
    tiles, points = ops.winograd_tile_count(2, 12, 13, tile), ops.winograd_points(tile)
    exact = torch.empty(points, tiles, 16)
    ops.winograd_input_transform(x, exact, tile=tile)
    rounded = torch.full((points, tiles + 1, 24), float("nan"), dtype=torch.bfloat16)[:, :tiles]
    ops.winograd_input_transform(x, rounded, channel_offset=8, tile=tile)
    assert torch.equal(rounded[:, :, 8:], exact.bfloat16())
    assert torch.isnan(rounded[:, :, :8]).all()
    tile_1_1 = -(-13 // tile) + 1  # tiles run row by row
    corner = rounded[0, tile_1_1, 8:12].float() / corner_gain
    assert corner.tolist() == [1, 1 + 2**-6, -1, -(1 + 2**-6)]


def test_bf16_output_transform_reads_bf16_products_exactly(generator) -> None:
    n, h, w, c = 1, 9, 14, 8
    tiles = ops.winograd_tile_count(n, h, w)
    m = torch.randn(64, tiles, c, generator=generator).bfloat16()
    bias = torch.randn(c, generator=generator)
    from_bf16, from_fp32 = torch.empty(n, h, w, c), torch.empty(n, h, w, c)
    ops.winograd_output_transform(m, bias, from_bf16, negative_slope=0.2)
    ops.winograd_output_transform(m.float(), bias, from_fp32, negative_slope=0.2)
    assert torch.equal(from_bf16, from_fp32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_products_are_the_batched_matrix_product_of_a_slice(dtype, generator) -> None:
    tiles, cin, cout = 37, 24, 16
    wide = torch.randn(64, tiles + 1, cin + 16, generator=generator).to(dtype)[:, :tiles]  # rows longer than Cin
    weight = torch.randn(64, cin, cout, generator=generator).to(dtype)
    out = torch.empty(64, tiles + 1, cout, dtype=dtype)[:, :tiles]
    ops.winograd_products(wide[:, :, :cin], weight, out)
    expected = torch.bmm(wide[:, :, :cin].double(), weight.double())
    # fp32: accumulation rounding; bf16: the result is rounded to bf16 (8 significant bits).
    tolerance = 1e-5 if dtype == torch.float32 else 2**-8
    torch.testing.assert_close(out.double(), expected, rtol=tolerance, atol=tolerance * expected.abs().max().item())


@pytest.mark.parametrize("tile", [6, 4])
def test_winograd_convolution_matches_conv2d(tile, generator) -> None:
    n, h, w, cin, cout = 2, 11, 13, 24, 16
    x = torch.randn(n, cin, h, w, generator=generator)
    weight = torch.randn(cout, cin, 3, 3, generator=generator) / 9
    bias = torch.randn(cout, generator=generator)
    tiles = ops.winograd_tile_count(n, h, w, tile)
    transformed = torch.empty(ops.winograd_points(tile), tiles, cin)
    ops.winograd_input_transform(x.permute(0, 2, 3, 1).contiguous(), transformed, tile=tile)
    products = torch.bmm(transformed, ops.winograd_kernels(weight, tile))
    out = torch.empty(n, h, w, cout)
    ops.winograd_output_transform(products, bias, out, tile=tile)
    expected = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    # fp32 F(6x6, 3x3) rounding: up to 6e-6 of the largest output over 20 seeds (stock fp32: 1e-6).
    scale = expected.abs().max().item()
    torch.testing.assert_close(out.permute(0, 3, 1, 2).double(), expected, rtol=0, atol=2e-5 * scale)


def trained_like(config: dict[str, int], generator: torch.Generator) -> RRDBNet:
    """A random RRDBNet(**config) in eval mode with trained-like magnitudes (biases not zero)."""
    torch.manual_seed(int(torch.randint(0, 2**31, (), generator=generator)))
    network = RRDBNet(**config).eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return network


@pytest.mark.parametrize("config, shape", [
    (dict(nf=16, gc=8, nb=2, scale=4), (2, 3, 13, 9)),
    (dict(nf=8, gc=8, nb=1, scale=2), (1, 3, 4, 21)),
    (dict(nf=16, gc=16, nb=1, scale=1), (1, 3, 17, 17)),
])
def test_winograd_rrdbnet_matches_the_stock_forward(config, shape, generator) -> None:
    network = trained_like(config, generator)
    x = torch.rand(shape, generator=generator)
    winograd = WinogradRRDBNet(network)
    with torch.inference_mode():
        expected = network(x)
        got = winograd(x)
        again = winograd(torch.rand(shape, generator=generator))  # the workspace is reused...
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.equal(again, got)  # ...and the first result was not overwritten by it
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_the_default_model_in_winograd_is_within_50_db_of_stock(generator) -> None:
    from realsr_fast.models import DEFAULT_MODEL
    from realsr_fast.models.loading import load_model

    network = load_model(DEFAULT_MODEL).eval()
    x = torch.rand(1, 3, 24, 20, generator=generator)
    with torch.inference_mode():
        expected = network(x).clamp(0, 1)
        got = WinogradRRDBNet(network)(x).clamp(0, 1)
    assert psnr(got, expected) >= 50


@pytest.mark.parametrize("config, shape", [
    (dict(nf=16, gc=8, nb=2, scale=4), (2, 3, 13, 9)),
    (dict(nf=8, gc=8, nb=1, scale=1), (1, 3, 17, 17)),
])
def test_bf16_gemms_stay_close_to_the_stock_fp32_forward(config, shape, generator) -> None:
    network = trained_like(config, generator)
    x = torch.rand(shape, generator=generator)
    with torch.inference_mode():
        expected = network(x)
        got = WinogradRRDBNet(network, torch.bfloat16)(x)
    assert got.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits: the bounds are about twice the worst errors over 200 seeds of
    # each config (docs/winograd.md); a wrong transform or kernel errs by a sizeable fraction of the range.
    scale, error = expected.abs().max().item(), (got.float() - expected).abs()
    assert error.square().mean().sqrt().item() <= 2e-2 * scale
    assert error.max().item() <= 0.15 * scale
    assert error.max().item() > 1e-6 * scale  # the GEMMs really ran in bf16


def test_the_default_model_with_bf16_gemms_is_within_40_db_of_stock_on_a_photo(generator) -> None:
    from realsr_fast.io.reading import read_image
    from realsr_fast.io.tensors import image_to_tensor
    from realsr_fast.models import DEFAULT_MODEL
    from realsr_fast.models.loading import load_model

    network = load_model(DEFAULT_MODEL).eval()
    photo = image_to_tensor(read_image(importlib.resources.files("realsr_fast") / "samples" / "coffee.png"))
    top, left = (int(torch.randint(0, s - 48, (), generator=generator)) for s in photo.shape[2:])
    x = photo[:, :, top:top + 48, left:left + 48]
    with torch.inference_mode():
        expected = network(x).clamp(0, 1)
        got = WinogradRRDBNet(network, torch.bfloat16)(x).float().clamp(0, 1)
    assert 40 <= psnr(got, expected) < 80  # close, and not fp32 (docs/winograd.md has the measured figures)


def test_gemm_dtypes_other_than_fp32_and_bf16_are_refused() -> None:
    with pytest.raises(ValueError, match="GEMMs"):
        WinogradRRDBNet(RRDBNet(nf=8, gc=8, nb=1), torch.float16)


def test_widths_that_are_not_multiples_of_8_are_refused_and_fall_back() -> None:
    network = RRDBNet(nf=12, gc=8, nb=1)
    assert not supports_winograd(network)
    with pytest.raises(ValueError, match="multiples of 8"):
        WinogradRRDBNet(network)
    from realsr_fast.inference.torch_runner import TorchRunner

    runner = TorchRunner(network.eval(), torch.device("cpu"), "fp32")  # stock convolutions instead
    assert runner(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("call, message", [
    (lambda: ops.winograd_input_transform(torch.zeros(1, 4, 4, 12), torch.zeros(64, 1, 12)), "multiple of 8"),
    (lambda: ops.winograd_input_transform(torch.zeros(1, 8, 4, 4).permute(0, 2, 3, 1), torch.zeros(64, 1, 8)),
     "contiguous NHWC"),
    (lambda: ops.winograd_input_transform(torch.zeros(1, 4, 4, 8), torch.zeros(64, 2, 8)), r"\(64, 1, C\)"),
    (lambda: ops.winograd_input_transform(torch.zeros(1, 4, 4, 8), torch.zeros(64, 1, 16), 9), "do not fit"),
    (lambda: ops.winograd_input_transform(torch.zeros(1, 4, 4, 8, dtype=torch.float64), torch.zeros(64, 1, 8)),
     "float32"),
    (lambda: ops.winograd_output_transform(torch.zeros(64, 1, 16), torch.zeros(8), torch.zeros(1, 4, 4, 8)),
     "channels"),
    (lambda: ops.winograd_output_transform(torch.zeros(64, 1, 8), torch.zeros(4), torch.zeros(1, 4, 4, 8)), "bias"),
    (lambda: ops.winograd_output_transform(torch.zeros(64, 1, 8), torch.zeros(8), torch.zeros(1, 4, 4, 8),
                                           residual=torch.zeros(1, 4, 3, 8)), "residual"),
    (lambda: ops.winograd_input_transform(torch.zeros(1, 4, 4, 8), torch.zeros(64, 1, 8, dtype=torch.float64)),
     "float32 or bfloat16"),
    (lambda: ops.winograd_products(torch.zeros(64, 5, 8), torch.zeros(64, 16, 8), torch.zeros(64, 5, 8)),
     r"weight \(P, Cin, Cout\)"),
    (lambda: ops.winograd_products(torch.zeros(64, 5, 8), torch.zeros(64, 8, 8, dtype=torch.bfloat16),
                                   torch.zeros(64, 5, 8)), "share a dtype"),
])
def test_bad_arguments_raise_a_clear_error(call, message) -> None:
    with pytest.raises(RealSRError, match=message):
        call()


def test_opcheck(generator) -> None:
    x = torch.randn(1, 5, 8, 8, generator=generator)
    torch.library.opcheck(torch.ops.realsr_fast.winograd_input_transform.default, (x, torch.zeros(64, 2, 8), 0, 6))
    torch.library.opcheck(torch.ops.realsr_fast.winograd_input_transform.default, (x, torch.zeros(36, 4, 8), 0, 4))
    m, bias = torch.randn(64, 2, 8, generator=generator), torch.randn(8, generator=generator)
    torch.library.opcheck(torch.ops.realsr_fast.winograd_output_transform.default,
                          (m, bias, torch.zeros(1, 5, 8, 8), 0.2, True, x, 0.2, 6))
    a, w = torch.randn(64, 3, 8, generator=generator), torch.randn(64, 8, 16, generator=generator)
    torch.library.opcheck(torch.ops.realsr_fast.winograd_products.default, (a, w, torch.zeros(64, 3, 16)))
