"""The Winograd F(6x6, 3x3) ops and the fp32 CPU RRDBNet built on them, against independent
references: the transforms written as the matrices of Lavin & Gray (2016) in float64 numpy, and
stock `F.conv2d` / `RRDBNet.forward` for whole convolutions and networks, on fresh random inputs."""
from __future__ import annotations

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


def windows(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, th, tw, 8, 8, C): the zero-padded 8x8 input window of each 6x6 tile."""
    n, h, w, c = x.shape
    th, tw = -(-h // 6), -(-w // 6)
    padded = np.zeros((n, 6 * th + 2, 6 * tw + 2, c))
    padded[:, 1:h + 1, 1:w + 1] = x
    return np.stack([np.stack([padded[:, 6 * i:6 * i + 8, 6 * j:6 * j + 8] for j in range(tw)], 1)
                     for i in range(th)], 1)


def assert_within_rounding(got: np.ndarray, expected: np.ndarray, magnitude: np.ndarray) -> None:
    """|got - expected| within fp32 rounding of the sum of the terms' magnitudes (the transforms'
    coefficients reach 32, so outputs can be much smaller than the terms that cancel into them)."""
    error = np.abs(got - expected)
    bound = 4e-6 * magnitude + 1e-6
    assert (error <= bound).all(), f"max error {error.max():.3g}, {(error / bound).max():.3g}x the rounding bound"


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))


@pytest.mark.parametrize("shape", [(1, 12, 12, 8), (2, 7, 14, 16), (1, 1, 5, 8)])
def test_input_transform_is_bt_d_b_of_every_window(shape, generator) -> None:
    x = torch.randn(shape, generator=generator)
    tiles = ops.winograd_tile_count(*shape[:3])
    out = torch.full((64, tiles + 3, shape[3] + 24), float("nan"))[:, :tiles]  # padded rows, wider channels
    ops.winograd_input_transform(x, out, channel_offset=16)
    d = windows(x.double().numpy())
    expected = np.einsum("pa,ntiabc,qb->pqntic", BT, d, BT).reshape(64, tiles, shape[3])
    magnitude = np.einsum("pa,ntiabc,qb->pqntic", abs(BT), abs(d), abs(BT)).reshape(64, tiles, shape[3])
    assert_within_rounding(out[:, :, 16:16 + shape[3]].numpy(), expected, magnitude)
    assert torch.isnan(out[:, :, :16]).all() and torch.isnan(out[:, :, 16 + shape[3]:]).all()


@pytest.mark.parametrize("slope", [None, 0.2])
@pytest.mark.parametrize("with_residual", [False, True])
def test_output_transform_is_at_m_a_plus_bias_act_residual(slope, with_residual, generator) -> None:
    n, h, w, c = 2, 13, 6, 16
    tiles = ops.winograd_tile_count(n, h, w)
    m = torch.randn(64, tiles + 1, c, generator=generator)[:, :tiles]
    bias = torch.randn(c, generator=generator)
    residual = torch.randn(n, h, w, c, generator=generator) if with_residual else None
    out = torch.empty(n, h, w, c)
    ops.winograd_output_transform(m, bias, out, negative_slope=slope, residual=residual, residual_scale=0.3)
    def to_image(tiles_of_6x6: np.ndarray) -> np.ndarray:
        image = tiles_of_6x6.reshape(n, -(-h // 6), -(-w // 6), 6, 6, c).transpose(0, 1, 3, 2, 4, 5)
        return image.reshape(n, 6 * -(-h // 6), 6 * -(-w // 6), c)[:, :h, :w]

    products = m.double().numpy().reshape(8, 8, tiles, c)
    y = to_image(np.einsum("rp,pqtc,sq->trsc", AT, products, AT)) + bias.double().numpy()
    magnitude = to_image(np.einsum("rp,pqtc,sq->trsc", abs(AT), abs(products), abs(AT))) + abs(bias.double().numpy())
    if slope is not None:
        y = np.where(y > 0, y, slope * y)
    if residual is not None:
        y = residual.double().numpy() + 0.3 * y
        magnitude = abs(residual.double().numpy()) + 0.3 * magnitude
    assert_within_rounding(out.numpy(), y, magnitude)


def test_winograd_convolution_matches_conv2d(generator) -> None:
    n, h, w, cin, cout = 2, 11, 13, 24, 16
    x = torch.randn(n, cin, h, w, generator=generator)
    weight = torch.randn(cout, cin, 3, 3, generator=generator) / 9
    bias = torch.randn(cout, generator=generator)
    tiles = ops.winograd_tile_count(n, h, w)
    transformed = torch.empty(64, tiles, cin)
    ops.winograd_input_transform(x.permute(0, 2, 3, 1).contiguous(), transformed)
    products = torch.bmm(transformed, ops.winograd_kernels(weight))
    out = torch.empty(n, h, w, cout)
    ops.winograd_output_transform(products, bias, out)
    expected = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    # fp32 F(6x6, 3x3) rounding: up to 6e-6 of the largest output over 20 seeds (stock fp32: 1e-6).
    scale = expected.abs().max().item()
    torch.testing.assert_close(out.permute(0, 3, 1, 2).double(), expected, rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize("config, shape", [
    (dict(nf=16, gc=8, nb=2, scale=4), (2, 3, 13, 9)),
    (dict(nf=8, gc=8, nb=1, scale=2), (1, 3, 4, 21)),
    (dict(nf=16, gc=16, nb=1, scale=1), (1, 3, 17, 17)),
])
def test_winograd_rrdbnet_matches_the_stock_forward(config, shape, generator) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31, (), generator=generator)))
    network = RRDBNet(**config).eval()
    with torch.no_grad():
        for parameter in network.parameters():  # trained-like magnitudes, biases not zero
            parameter.add_(torch.randn_like(parameter) * 0.05)
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
])
def test_bad_arguments_raise_a_clear_error(call, message) -> None:
    with pytest.raises(RealSRError, match=message):
        call()


def test_opcheck(generator) -> None:
    x = torch.randn(1, 5, 8, 8, generator=generator)
    torch.library.opcheck(torch.ops.realsr_fast.winograd_input_transform.default, (x, torch.zeros(64, 2, 8), 0))
    m, bias = torch.randn(64, 2, 8, generator=generator), torch.randn(8, generator=generator)
    torch.library.opcheck(torch.ops.realsr_fast.winograd_output_transform.default,
                          (m, bias, torch.zeros(1, 5, 8, 8), 0.2, True, x, 0.2))
