"""The C++ ops' per-instruction-set clones (baseline, AVX2, AVX-512): each one the CPU supports runs
the op tests, so a clone other than the best is not dead code, and every clone of every op is
compared with the baseline clone within a bound derived from floating-point rounding (the clones
differ in the last bits where the compiler fuses a multiply and an add, see below). The clone is
chosen by the environment variable REALSR_FAST_ISA when the library loads (checked in a subprocess),
or switched in-process with ops.forced_cpu_isa (used here, which keeps the run short)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from realsr_fast import RealSRError, ops

ROOT = Path(__file__).resolve().parent.parent
ISAS = ["baseline", "avx2", "avx512"]
OP_TESTS = ["tests/test_degrade.py", "tests/test_patch_stats.py", "tests/test_batchnorm_relu.py",
            "tests/test_correlation_grad.py"]


def _supported(isa: str) -> bool:
    try:
        with ops.forced_cpu_isa(isa):
            return True
    except RealSRError:
        return False


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("isa", ISAS)
def test_environment_variable_selects_the_clone(isa):
    if not _supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    result = _python("from realsr_fast import ops; print(ops.cpu_isa())", REALSR_FAST_ISA=isa)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == isa


def test_unknown_or_unsupported_isa_is_a_clear_error():
    result = _python("from realsr_fast import ops; ops.cpu_isa()", REALSR_FAST_ISA="sse9")
    assert result.returncode != 0 and "REALSR_FAST_ISA=sse9 is not an instruction set" in result.stderr
    with pytest.raises(RealSRError, match="not an instruction set"), ops.forced_cpu_isa("neon"):
        pass
    if not _supported("avx512"):
        with pytest.raises(RealSRError, match="supports at most"), ops.forced_cpu_isa("avx512"):
            pass


# --- every clone of every op against the baseline clone -------------------------------------------
#
# The clones are one source compiled three times; they differ only where the compiler contracts a
# multiply and an add into one FMA (AVX2 and AVX-512 have FMA, baseline x86-64 has not), which
# rounds once instead of twice. So they agree to within floating-point rounding, not bit for bit.
# Each bound below is the classic forward error bound of the op's arithmetic (Higham, "Accuracy and
# Stability of Numerical Algorithms", ch. 3): a result summed from products along a chain of at most
# n rounded operations is within gamma_n = n u / (1 - n u) of the sum of the terms' magnitudes from
# the exact value, whether or not each multiply-add is fused; two clones are then within twice that
# of each other. u is the unit roundoff of the op's arithmetic (2^-24 for float32, 2^-53 for float64).

SIMD_ISAS = ["avx2", "avx512"]
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}


def gamma(n: int, dtype: torch.dtype) -> float:
    u = UNIT_ROUNDOFF[dtype]
    return n * u / (1 - n * u)


def _clone(isa: str, fn):
    with ops.forced_cpu_isa(isa):
        assert ops.cpu_isa() == isa
        return fn()


def _need(isa: str) -> None:
    if not _supported(isa):
        pytest.skip(f"this CPU has no {isa}")


def assert_within(got: torch.Tensor, want: torch.Tensor, bound, what: str) -> None:
    """|got - want| <= bound elementwise (bound: a tensor like `want`, or a number; 0 means exact)."""
    diff = (got.double() - want.double()).abs()
    bound = torch.as_tensor(bound, dtype=torch.float64).expand_as(diff)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    excess = diff - bound
    assert (excess <= 0).all(), (f"{what}: the clone differs from the baseline by up to {diff.max():.3g}, "
                                 f"{excess.max():.3g} beyond the rounding bound")


def _degrade_inputs(rng):
    """Two calls: uint8 HR, per-sample odd kernels, x3; float HR, one signed even kernel, x2, real noise."""
    hr8 = torch.from_numpy(rng.integers(0, 256, (2, 3, 45, 38), dtype=np.uint8))
    hrf = torch.from_numpy(rng.random((2, 3, 37, 41), dtype=np.float32))
    bank = torch.from_numpy(rng.integers(0, 256, (3, 3, 24, 24), dtype=np.uint8))
    noise = dict(noise_bank=bank, noise_index=torch.tensor([2, 0]), noise_offset=torch.tensor([[1, 3], [0, 0]]))
    blurs = rng.random((2, 13, 13))
    signed = rng.standard_normal((8, 8))
    return [(hr8, torch.from_numpy(blurs / blurs.sum(axis=(1, 2), keepdims=True)).float(), 3, {}),
            (hrf, torch.from_numpy(signed / np.abs(signed).sum()).float(), 2, dict(padding="reflect", **noise))]


@pytest.mark.parametrize("isa", SIMD_ISAS)
def test_degrade_clones_agree_within_fp32_rounding(rng, isa):
    """out = sum of k*k products (two chains, then their sum), / 255 for uint8, + noise, clamped:
    at most k*k + 3 roundings from the exact value, measured against sum |K| |HR~| (+ 1 for the
    noise, whose values and mean lie in [0, 1]). uint8 outputs may differ by one level, and only
    where the float value lies within that bound of a rounding tie."""
    _need(isa)
    for hr, kernels, scale, extra in _degrade_inputs(rng):
        k = kernels.shape[-1]
        terms = ops.degrade_reference(hr, kernels.abs(), scale, padding=extra.get("padding", "symmetric"),
                                      clamp=False).double()
        bound = 2 * gamma(k * k + 3, torch.float32) * (terms + ("noise_bank" in extra))
        for clamp in (False, True):
            def run(clamp=clamp):
                return ops.degrade(hr, kernels, scale, clamp=clamp, **extra)

            assert_within(_clone(isa, run), _clone("baseline", run), bound, f"degrade k={k} clamp={clamp}")

        def run8():
            return ops.degrade(hr, kernels, scale, out_dtype=torch.uint8, **extra)

        got, want = _clone(isa, run8).int(), _clone("baseline", run8).int()
        value = _clone("baseline", lambda: ops.degrade(hr, kernels, scale, **extra)).double() * 255
        from_tie = (value - value.floor() - 0.5).abs()
        may_differ = from_tie <= 255 * bound + 2 * 255 * UNIT_ROUNDOFF[torch.float32] * value.abs()
        assert ((got - want).abs() <= may_differ.int()).all(), f"degrade uint8 k={k}: differs away from a tie"


@pytest.mark.parametrize("isa", SIMD_ISAS)
def test_patch_stats_clones_agree_exactly_on_uint8_and_within_rounding_on_float(rng, isa):
    """uint8: integer sums, then one division and one float32 rounding: the clones agree exactly.
    float: double sums slid along rows then columns (at most 2(H + W) + 8 roundings, the grey's
    own included, over terms of at most 4HW grey magnitudes of at most 383), then one float32
    rounding each: within 2 float32 half-ulps plus the double bound."""
    _need(isa)
    for image in (torch.from_numpy(rng.integers(0, 256, (2, 3, 45, 38), dtype=np.uint8)),
                  torch.from_numpy(rng.integers(0, 256, (1, 1, 30, 33), dtype=np.uint8))):
        got, want = _clone(isa, lambda: ops.patch_stats(image, 9, 4)), _clone("baseline", lambda: ops.patch_stats(image, 9, 4))
        for g, w, name in zip(got, want, ("mean", "var")):
            assert_within(g, w, 0, f"patch_stats uint8 {name}")
    image = torch.from_numpy(rng.random((2, 3, 45, 38), dtype=np.float32))
    patch, (height, width) = 9, image.shape[-2:]
    n = patch * patch
    got, want = _clone(isa, lambda: ops.patch_stats(image, patch, 4)), _clone("baseline", lambda: ops.patch_stats(image, patch, 4))
    g64, u32, u64 = gamma(2 * (height + width) + 8, torch.float64), UNIT_ROUNDOFF[torch.float32], UNIT_ROUNDOFF[torch.float64]
    sum_error = g64 * 4 * height * width * 383.0
    square_error = g64 * 4 * height * width * 383.0**2
    shifted_mean = want[0].double().abs() + 128
    mean_error = sum_error / n + u64 * shifted_mean
    mean_bound = 2 * mean_error + 2 * u32 * want[0].double().abs()
    var_bound = 2 * (square_error / n + 2 * shifted_mean * mean_error + 3 * u64 * (want[1].double() + shifted_mean**2)) \
        + 2 * u32 * want[1].double().abs()
    assert_within(got[0], want[0], mean_bound, "patch_stats float mean")
    assert_within(got[1], want[1], var_bound, "patch_stats float var")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("isa", SIMD_ISAS)
def test_batchnorm_relu_clones_agree_within_rounding(rng, isa, dtype):
    """Per row of n values, summed in 16 lanes (n/16 + 4 roundings, + 1 for / n). Forward: the mean
    is a plain sum (no product to fuse); var = sum (x - mean)^2 / n; invstd = 1/sqrt(var + eps) moves
    by half var's relative error plus its two roundings; y = relu(x * scale + shift) with
    scale = w * invstd, shift = b - mean * scale. Backward (from the baseline's forward): the two sums,
    then dx = scale * (g - sum g / n - (x - mean) * xhat_factor)."""
    _need(isa)
    u = UNIT_ROUNDOFF[dtype]
    rows, cols = 6, 203
    x = torch.from_numpy(rng.standard_normal((rows, cols)) * rng.uniform(0.1, 5, (rows, 1)) + rng.normal(0, 2, (rows, 1))).to(dtype)
    w, b = torch.from_numpy(rng.uniform(0.2, 2, rows)).to(dtype), torch.from_numpy(rng.standard_normal(rows)).to(dtype)
    eps = 1e-5

    def forward():
        return torch.ops.realsr_fast.batchnorm_relu(x, w, b, eps)

    (y, mean, invstd), (y0, mean0, invstd0) = _clone(isa, forward), _clone("baseline", forward)
    chain = gamma(-(-cols // 16) + 5, dtype)
    xd, md, sd = x.double(), mean0.double()[:, None], invstd0.double()[:, None]
    var = ((xd - md) ** 2).mean(1, keepdim=True)
    relative_invstd = chain * var / (var + eps) + 2 * u
    scale = (w.double()[:, None] * sd).abs()
    relative_scale = relative_invstd + 2 * u
    shift_bound = md.abs() * scale * relative_scale + 2 * gamma(2, dtype) * (b.double()[:, None].abs() + md.abs() * scale)
    y_bound = scale * xd.abs() * relative_scale + shift_bound \
        + 2 * gamma(2, dtype) * (scale * xd.abs() + b.double()[:, None].abs() + md.abs() * scale)
    assert_within(mean, mean0, 2 * chain * xd.abs().mean(1), f"batchnorm_relu {dtype} mean")
    assert_within(invstd, invstd0, (sd * relative_invstd)[:, 0], f"batchnorm_relu {dtype} invstd")
    assert_within(y, y0, y_bound, f"batchnorm_relu {dtype} y")

    grad_y = torch.from_numpy(rng.standard_normal((rows, cols))).to(dtype)

    def backward():
        return torch.ops.realsr_fast.batchnorm_relu_backward(grad_y, x, y0, mean0, invstd0, w)

    (dx, dw, db), (dx0, dw0, db0) = _clone(isa, backward), _clone("baseline", backward)
    g = torch.where(y0 > 0, grad_y, torch.zeros_like(grad_y)).double()
    centred = (xd - md).abs()
    sum_g_bound = 2 * chain * g.abs().sum(1)
    sum_gx_bound = 2 * gamma(-(-cols // 16) + 6, dtype) * (g.abs() * centred).sum(1) * sd[:, 0]
    xhat_factor = (g * (xd - md)).sum(1, keepdim=True) * sd**2 / cols
    factor_bound = sum_gx_bound[:, None] * sd / cols + 2 * gamma(2, dtype) * xhat_factor.abs()
    dx_bound = scale * (sum_g_bound[:, None] / cols + centred * factor_bound) \
        + 2 * gamma(5, dtype) * scale * (g.abs() + g.sum(1, keepdim=True).abs() / cols + centred * xhat_factor.abs())
    assert_within(db, db0, sum_g_bound, f"batchnorm_relu_backward {dtype} grad_bias")
    assert_within(dw, dw0, sum_gx_bound, f"batchnorm_relu_backward {dtype} grad_weight")
    assert_within(dx, dx0, dx_bound, f"batchnorm_relu_backward {dtype} grad_x")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("isa", SIMD_ISAS)
def test_correlation_kernel_grad_clones_agree_within_rounding(rng, isa, dtype):
    """Each kernel tap: one running sum of B * h * w products: within gamma_(Bhw) of sum |grad| |x|."""
    _need(isa)
    x = torch.from_numpy(rng.standard_normal((3, 2, 31, 27))).to(dtype)
    grad = torch.from_numpy(rng.standard_normal((3, 2, 9, 7))).to(dtype)

    def run():
        return ops.correlation_kernel_grad(x, grad, 3, 5)

    terms = ops.correlation_kernel_grad_reference(x.double().abs(), grad.double().abs(), 3, 5)
    bound = 2 * gamma(3 * 9 * 7, dtype) * terms
    assert_within(_clone(isa, run), _clone("baseline", run), bound, f"correlation_kernel_grad {dtype}")


# Winograd F(6x6, 3x3) transforms from the points 0, 1, -1, 2, -2, 1/2, -1/2, infinity (Lavin & Gray
# 2016), for the magnitudes of the terms only.
_POINTS = [0, 1, -1, 2, -2, 0.5, -0.5]


def _coefficients(roots):
    poly = np.array([1.0])
    for root in roots:
        poly = np.convolve(poly, [-root, 1.0])
    return np.pad(poly, (0, 8 - len(poly)))


_BT = np.abs(np.stack([_coefficients(_POINTS[:j] + _POINTS[j + 1:]) for j in range(7)] + [_coefficients(_POINTS)]))
_AT = np.abs(np.array([[a**i for a in _POINTS] + [float(i == 5)] for i in range(6)]))


def _windows(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (64, T, C): the zero-padded 8x8 input window of each 6x6 tile, flattened."""
    n, h, w, c = x.shape
    th, tw = -(-h // 6), -(-w // 6)
    padded = np.zeros((n, 6 * th + 2, 6 * tw + 2, c))
    padded[:, 1:h + 1, 1:w + 1] = x
    tiles = [padded[b, 6 * i:6 * i + 8, 6 * j:6 * j + 8] for b in range(n) for i in range(th) for j in range(tw)]
    return np.stack(tiles, 2).reshape(64, len(tiles), c)


@pytest.mark.parametrize("isa", SIMD_ISAS)
def test_winograd_clones_agree_within_fp32_rounding(rng, isa):
    """Input: B^T d B, two 1-D passes of at most 5 roundings on any path: within gamma_10 of
    |B^T| |d| |B|. Output: A^T M A (two passes of at most 4), + bias, LeakyReLU (one product),
    residual + scale * value (two): within gamma_12 of |res| + scale (|A^T| |M| |A| + |bias|)."""
    _need(isa)
    n, h, w, c = 2, 13, 10, 16
    tiles = ops.winograd_tile_count(n, h, w)
    x = torch.from_numpy(rng.standard_normal((n, h, w, c), dtype=np.float32))

    def transform():
        out = torch.empty(64, tiles, c)
        ops.winograd_input_transform(x, out)
        return out

    d = _windows(x.double().numpy()).reshape(8, 8, tiles, c)
    terms = np.einsum("pa,abtc,qb->pqtc", _BT, np.abs(d), _BT).reshape(64, tiles, c)
    assert_within(_clone(isa, transform), _clone("baseline", transform), 2 * gamma(10, torch.float32) * torch.from_numpy(terms),
                  "winograd_input_transform")

    m = torch.from_numpy(rng.standard_normal((64, tiles, c), dtype=np.float32))
    bias = torch.from_numpy(rng.standard_normal(c, dtype=np.float32))
    residual = torch.from_numpy(rng.standard_normal((n, h, w, c), dtype=np.float32))
    image_terms = np.einsum("rp,pqtc,sq->trsc", _AT, np.abs(m.double().numpy()).reshape(8, 8, tiles, c), _AT)
    th, tw = -(-h // 6), -(-w // 6)
    image_terms = image_terms.reshape(n, th, tw, 6, 6, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, 6 * th, 6 * tw, c)
    value_terms = torch.from_numpy(image_terms[:, :h, :w]) + bias.double().abs()
    for slope, res in ((None, None), (0.2, None), (0.2, residual)):
        def output(slope=slope, res=res):
            out = torch.empty(n, h, w, c)
            ops.winograd_output_transform(m, bias, out, negative_slope=slope, residual=res, residual_scale=0.3)
            return out

        terms = value_terms if res is None else res.double().abs() + 0.3 * value_terms
        assert_within(_clone(isa, output), _clone("baseline", output), 2 * gamma(12, torch.float32) * terms,
                      f"winograd_output_transform slope={slope} residual={res is not None}")


def test_the_simd_clones_really_run_fused_arithmetic(rng):
    """Not a tautology: on this CPU's best SIMD clone, some op really differs from the baseline in the
    last bits (so the bounds above are exercised, and the docs' 'not bit for bit' is true)."""
    isa = next((isa for isa in reversed(SIMD_ISAS) if _supported(isa)), None)
    if isa is None:
        pytest.skip("this CPU has no SIMD clone")
    x = torch.from_numpy(rng.standard_normal((3, 2, 31, 27), dtype=np.float32))
    grad = torch.from_numpy(rng.standard_normal((3, 2, 9, 7), dtype=np.float32))

    def run():
        return ops.correlation_kernel_grad(x, grad, 3, 5)

    assert not torch.equal(_clone(isa, run), _clone("baseline", run))


@pytest.mark.slow
@pytest.mark.parametrize("isa", ISAS)
def test_op_tests_pass_under_each_clone(isa):
    """The op test files, in a fresh process that loads the library with REALSR_FAST_ISA=isa."""
    if not _supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not cuda and not slow",
                             *OP_TESTS], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "REALSR_FAST_ISA": isa})
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("tile", [6, 4])
def test_winograd_bf16_in_every_clone_is_its_fp32_result_rounded(rng, isa, tile):
    """Each clone's bf16 transformed values are its own fp32 ones rounded to nearest even, and its
    output transform reads bf16 products as their fp32 values: the bit handling is the same code
    in every instruction set, and exact."""
    _need(isa)
    n, h, w, c = 2, 13, 10, 16
    tiles, points = ops.winograd_tile_count(n, h, w, tile), ops.winograd_points(tile)
    x = torch.from_numpy(rng.standard_normal((n, h, w, c), dtype=np.float32))

    def transform(dtype):
        out = torch.empty(points, tiles, c, dtype=dtype)
        ops.winograd_input_transform(x, out, tile=tile)
        return out

    assert torch.equal(_clone(isa, lambda: transform(torch.bfloat16)), _clone(isa, lambda: transform(torch.float32)).bfloat16())
    m = torch.from_numpy(rng.standard_normal((points, tiles, c), dtype=np.float32)).bfloat16()
    bias = torch.from_numpy(rng.standard_normal(c, dtype=np.float32))

    def output(products):
        out = torch.empty(n, h, w, c)
        ops.winograd_output_transform(products, bias, out, negative_slope=0.2, tile=tile)
        return out

    assert torch.equal(_clone(isa, lambda: output(m)), _clone(isa, lambda: output(m.float())))
