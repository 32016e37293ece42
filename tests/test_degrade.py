"""realsr_fast.ops.degrade against a numpy reference written from the method (docs/METHOD.md §3 and §5)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from numpy.lib.stride_tricks import sliding_window_view

from realsr_fast import RealSRError, ops

NUMPY_PAD_MODE = {"symmetric": "symmetric", "reflect": "reflect", "replicate": "edge", "zeros": "constant"}
HR_DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32]


def reference_degrade(hr, kernels, scale, noise=None, padding="symmetric", clamp=True, quantize=False):
    """The contract literally, in float64 numpy: extend, then each output is a k x k window sum.

    hr: (B, C, H, W) float64 in [0, 1]; kernels: (B, k, k); noise: (B, C, Ho, Wo) raw crops or None.
    """
    batch, channels, height, width = hr.shape
    k = kernels.shape[-1]
    out_h, out_w = -(-height // scale), -(-width // scale)
    before = k // 2
    after_h = scale * (out_h - 1) + k - 1 - before - (height - 1)
    after_w = scale * (out_w - 1) + k - 1 - before - (width - 1)
    out = np.empty((batch, channels, out_h, out_w))
    for b in range(batch):
        for c in range(channels):
            plane = np.pad(hr[b, c], ((before, max(after_h, 0)), (before, max(after_w, 0))), mode=NUMPY_PAD_MODE[padding])
            windows = sliding_window_view(plane, (k, k))[::scale, ::scale][:out_h, :out_w]
            out[b, c] = np.einsum("ijuv,uv->ij", windows, kernels[b])
    if noise is not None:
        out += noise - noise.mean(axis=(2, 3), keepdims=True)
    if clamp:
        out = np.clip(out, 0, 1)
    if quantize:
        out = np.round(out * 255) / 255
    return out


def random_case(rng, dtype, k, scale, batch=2, channels=3, min_size=None):
    low = max(k + scale, 5) if min_size is None else min_size
    height, width = rng.integers(low, low + 24, size=2)
    values = rng.random((batch, channels, height, width))
    if dtype == torch.uint8:
        hr = torch.from_numpy(np.round(values * 255).astype(np.uint8))
    else:
        hr = torch.from_numpy(values).to(dtype)
    kernels = rng.random((batch, k, k)) ** 3
    kernels /= kernels.sum(axis=(1, 2), keepdims=True)
    return hr, torch.from_numpy(kernels).float()


def as_unit_float64(t: torch.Tensor) -> np.ndarray:
    x = t.double().numpy()
    return x / 255 if t.dtype == torch.uint8 else x


def random_noise(rng, batch, channels, out_h, out_w, bank_dtype):
    patch = max(out_h, out_w) + int(rng.integers(0, 8))
    bank = rng.normal(0.5, 0.1, size=(int(rng.integers(1, 5)), channels, patch, patch)).clip(0, 1)
    bank = torch.from_numpy(np.round(bank * 255).astype(np.uint8)) if bank_dtype == torch.uint8 else torch.from_numpy(bank).to(bank_dtype)
    index = torch.from_numpy(rng.integers(0, bank.shape[0], size=batch))
    offset = torch.from_numpy(np.stack([rng.integers(0, patch - out_h + 1, size=batch), rng.integers(0, patch - out_w + 1, size=batch)], axis=1))
    crops = np.stack([as_unit_float64(bank[index[b], :, offset[b, 0] : offset[b, 0] + out_h, offset[b, 1] : offset[b, 1] + out_w]) for b in range(batch)])
    return bank, index, offset, crops


@pytest.mark.parametrize("padding", ["symmetric", "reflect", "replicate", "zeros"])
@pytest.mark.parametrize("dtype", HR_DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided_view"])
def test_matches_contract(rng, padding, dtype, layout):
    pairs = [(1, 1), (33, 4), (2, 2)] + [(int(rng.integers(1, 34)), int(rng.integers(1, 5))) for _ in range(4)]
    for case, (k, scale) in enumerate(pairs):
        hr, kernels = random_case(rng, dtype, k, scale)
        if layout == "channels_last":
            hr = hr.contiguous(memory_format=torch.channels_last)
        elif layout == "strided_view":
            hr = torch.cat([hr, hr], dim=3)[..., ::2]
        out_h, out_w = -(-hr.shape[2] // scale), -(-hr.shape[3] // scale)
        with_noise = case % 2 == 1
        noise_args, crops = {}, None
        if with_noise:
            bank, index, offset, crops = random_noise(rng, 2, 3, out_h, out_w, [torch.uint8, torch.float32][case % 4 == 1])
            noise_args = dict(noise_bank=bank, noise_index=index, noise_offset=offset)
        got = ops.degrade(hr, kernels, scale, padding=padding, **noise_args)
        want = reference_degrade(as_unit_float64(hr), kernels.double().numpy(), scale, crops, padding)
        assert got.dtype == torch.float32 and got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want, atol=2e-6, err_msg=f"k={k} s={scale} noise={with_noise}")


@pytest.mark.parametrize("k", [3, 4, 7, 8, 33])
def test_symmetric_equals_scipy_correlate(rng, k):
    hr, kernels = random_case(rng, torch.float32, k, 4, batch=1, channels=1)
    want = scipy.ndimage.correlate(hr[0, 0].double().numpy(), kernels[0].double().numpy(), mode="reflect")[::4, ::4]
    got = ops.degrade(hr, kernels, 4, clamp=False)
    np.testing.assert_allclose(got[0, 0].numpy(), want, atol=2e-6)


def assert_equal_except_ties(got_u8: np.ndarray, want_unit: np.ndarray):
    scaled = want_unit * 255
    differs = got_u8.astype(np.int64) != np.round(scaled).astype(np.int64)
    near_tie = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-4
    assert not np.any(differs & ~near_tie), f"{np.count_nonzero(differs & ~near_tie)} samples differ away from rounding ties"


@pytest.mark.parametrize("padding", ["symmetric", "zeros"])
def test_uint8_to_uint8_is_exact_up_to_ties(rng, padding):
    hr, kernels = random_case(rng, torch.uint8, 21, 4, batch=3)
    out_h, out_w = -(-hr.shape[2] // 4), -(-hr.shape[3] // 4)
    bank, index, offset, crops = random_noise(rng, 3, 3, out_h, out_w, torch.uint8)
    got = ops.degrade(hr, kernels, 4, noise_bank=bank, noise_index=index, noise_offset=offset, padding=padding, out_dtype=torch.uint8)
    want = reference_degrade(as_unit_float64(hr), kernels.double().numpy(), 4, crops, padding)
    assert got.dtype == torch.uint8
    assert_equal_except_ties(got.numpy(), want)


def test_quantize_matches_the_reference_away_from_ties(rng):
    hr, kernels = random_case(rng, torch.float32, 5, 2)
    got = ops.degrade(hr, kernels, 2, quantize=True)
    want = reference_degrade(hr.double().numpy(), kernels.double().numpy(), 2)
    assert torch.equal(got * 255, torch.round(got * 255)), "quantized values are not multiples of 1/255"
    assert_equal_except_ties(np.round(got.double().numpy() * 255).astype(np.uint8), want)


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.uint8], ids=str)
def test_exact_ties_round_half_to_even(rng, out_dtype):
    """Values whose float32 product with 255 is exactly n + 1/2 (a 1x1 unit kernel at scale 1 passes
    them through unchanged) go to the even neighbour: 0.5 -> 0, 1.5 -> 2, ..., 254.5 -> 254."""
    candidates = (np.arange(255, dtype=np.float64) + 0.5) / 255
    as_f32 = candidates.astype(np.float32)
    exact = as_f32[as_f32 * np.float32(255) == np.float32(np.arange(255) + 0.5)]
    assert len(exact) > 100 and len({int(v * 255) % 2 for v in exact}) == 2  # both parities present
    hr = torch.from_numpy(rng.permutation(exact)).reshape(1, 1, 1, -1)
    got = ops.degrade(hr, torch.ones(1, 1, 1), 1, quantize=True, out_dtype=out_dtype)
    levels = np.round(got.double().numpy() * 255) if out_dtype == torch.float32 else got.numpy()
    ties = hr.numpy() * np.float32(255)  # exactly n + 1/2, by the choice above
    want = 2 * np.floor((ties + 0.5) / 2)  # the even one of n and n + 1
    np.testing.assert_array_equal(np.abs(want - ties), 0.5)
    np.testing.assert_array_equal(levels, want)


@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_outputs(rng, out_dtype):
    hr, kernels = random_case(rng, torch.uint8, 9, 3)
    got = ops.degrade(hr, kernels, 3, out_dtype=out_dtype)
    want = torch.from_numpy(reference_degrade(as_unit_float64(hr), kernels.double().numpy(), 3)).float().to(out_dtype)
    assert got.dtype == out_dtype
    torch.testing.assert_close(got, want, atol=0, rtol=torch.finfo(out_dtype).eps)


def test_shared_kernel_equals_per_sample_copies(rng):
    hr, kernels = random_case(rng, torch.uint8, 13, 4, batch=4)
    shared = ops.degrade(hr, kernels[0], 4)
    per_sample = ops.degrade(hr, kernels[0].expand(4, -1, -1), 4)
    torch.testing.assert_close(shared, per_sample, atol=0, rtol=0)


def test_channels_last_input_gives_channels_last_output(rng):
    hr, kernels = random_case(rng, torch.uint8, 7, 2)
    out = ops.degrade(hr.contiguous(memory_format=torch.channels_last), kernels, 2)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ops.degrade(hr, kernels, 2), atol=0, rtol=0)


def test_large_image_parallel_bands_match_reference(rng):
    # Tall enough that the CPU splits planes into several bands of output rows.
    hr, kernels = random_case(rng, torch.uint8, 33, 4, batch=1, channels=1, min_size=300)
    got = ops.degrade(hr, kernels[0], 4, clamp=False)
    want = reference_degrade(as_unit_float64(hr), kernels.double().numpy()[:1], 4, clamp=False)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-6)


def test_empty_batch_returns_empty():
    out = ops.degrade(torch.zeros(0, 3, 20, 20, dtype=torch.uint8), torch.ones(3, 3) / 9, 4)
    assert out.shape == (0, 3, 5, 5)


def test_composition_baseline_matches_op(rng):
    hr, kernels = random_case(rng, torch.uint8, 33, 4, batch=4)
    out_h, out_w = -(-hr.shape[2] // 4), -(-hr.shape[3] // 4)
    bank, index, offset, _ = random_noise(rng, 4, 3, out_h, out_w, torch.uint8)
    args = dict(noise_bank=bank, noise_index=index, noise_offset=offset, quantize=True)
    for padding in ["symmetric", "reflect", "replicate", "zeros"]:
        got = ops.degrade(hr, kernels, 4, padding=padding, **args)
        baseline = ops.degrade_reference(hr, kernels, 4, padding=padding, **args)
        assert (got - baseline).abs().max() <= 1 / 255 + 1e-6  # at most a rounding tie apart


def bad_calls():
    hr = torch.rand(2, 3, 16, 16)
    k = torch.ones(2, 5, 5) / 25
    bank = torch.rand(3, 3, 8, 8)
    idx, off = torch.tensor([0, 2]), torch.tensor([[0, 0], [4, 4]])
    yield "must be \\(B, C, H, W\\)", (hr[0], k, 4), {}
    yield "kernels must be \\(k, k\\) or \\(B, k, k\\)", (hr, k[0, 0], 4), {}
    yield "must be square", (hr, torch.ones(2, 5, 3), 4), {}
    yield "batch of 2", (hr, torch.ones(3, 5, 5), 4), {}
    yield "scale must be >= 1", (hr, k, 0), {}
    yield "padding must be", (hr, k, 4), dict(padding="mirror")
    yield "padding='reflect' needs", (torch.rand(1, 1, 4, 30), torch.ones(9, 9), 2), dict(padding="reflect")
    yield "go together", (hr, k, 4), dict(noise_bank=bank)
    yield "outside the bank of 3", (hr, k, 4), dict(noise_bank=bank, noise_index=torch.tensor([0, 3]), noise_offset=off)
    yield "outside the bank of 3", (hr, k, 4), dict(noise_bank=bank, noise_index=torch.tensor([-1, 0]), noise_offset=off)
    yield "noise_offset\\[1\\] = \\(5, 4\\)", (hr, k, 4), dict(noise_bank=bank, noise_index=idx, noise_offset=torch.tensor([[0, 0], [5, 4]]))
    yield "noise_offset\\[0\\] = \\(-1, 0\\)", (hr, k, 4), dict(noise_bank=bank, noise_index=idx, noise_offset=torch.tensor([[-1, 0], [0, 0]]))
    # oy + out_h wraps int64 for these: the check must not overflow (else: reads far outside the bank)
    yield "noise_offset\\[1\\] = \\(9223372036854775806, 0\\)", (hr, k, 4), dict(noise_bank=bank, noise_index=idx, noise_offset=torch.tensor([[0, 0], [2**63 - 2, 0]]))
    yield "noise_offset\\[0\\] = \\(0, 4611686018427387904\\)", (hr, k, 4), dict(noise_bank=bank, noise_index=idx, noise_offset=torch.tensor([[0, 2**62], [0, 0]]))
    yield "has 1 channels but hr has 3", (hr, k, 4), dict(noise_bank=bank[:, :1], noise_index=idx, noise_offset=off)
    yield "noise_offset must be \\(B, 2\\)", (hr, k, 4), dict(noise_bank=bank, noise_index=idx, noise_offset=off[:, :1])
    yield "hr must be uint8, float16", (hr.double(), k, 4), {}
    yield "out_dtype must be", (hr, k, 4), dict(out_dtype=torch.int32)


@pytest.mark.parametrize("match,args,kwargs", list(bad_calls()), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_arguments_raise_clear_errors(match, args, kwargs):
    with pytest.raises(RealSRError, match=match):
        ops.degrade(*args, **kwargs)


def test_opcheck(rng):
    hr, kernels = random_case(rng, torch.uint8, 7, 2)
    out_h, out_w = -(-hr.shape[2] // 2), -(-hr.shape[3] // 2)
    bank, index, offset, _ = random_noise(rng, 2, 3, out_h, out_w, torch.uint8)
    samples = [
        (hr, kernels, 2, None, None, None, "symmetric", True, False, None),
        (hr.float().div(255).contiguous(memory_format=torch.channels_last), kernels[0], 2, bank, index, offset, "zeros", True, True, torch.uint8),
    ]
    for args in samples:
        torch.library.opcheck(torch.ops.realsr_fast.degrade.default, args)


def test_torch_compile_traces_callers(rng):
    hr, kernels = random_case(rng, torch.uint8, 5, 2)

    def pipeline(x, k):
        return ops.degrade(x, k, 2, quantize=True) * 2

    compiled = torch.compile(pipeline, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(hr, kernels), pipeline(hr, kernels))


@pytest.mark.cuda
@pytest.mark.parametrize("padding", ["symmetric", "reflect", "replicate", "zeros"])
@pytest.mark.parametrize("dtype", HR_DTYPES, ids=str)
def test_cuda_matches_cpu(rng, padding, dtype):
    for k, scale in [(1, 1), (33, 4), (8, 2), (13, 3)]:
        hr, kernels = random_case(rng, dtype, k, scale, batch=3)
        out_h, out_w = -(-hr.shape[2] // scale), -(-hr.shape[3] // scale)
        bank, index, offset, _ = random_noise(rng, 3, 3, out_h, out_w, torch.uint8)
        args = dict(noise_bank=bank, noise_index=index, noise_offset=offset, padding=padding)
        want = ops.degrade(hr, kernels, scale, **args)
        got = ops.degrade(hr.cuda(), kernels.cuda(), scale, **{n: (v.cuda() if torch.is_tensor(v) else v) for n, v in args.items()})
        torch.testing.assert_close(got.cpu(), want, atol=2e-6, rtol=0)
        got_u8 = ops.degrade(hr.cuda().contiguous(memory_format=torch.channels_last), kernels.cuda(), scale, padding=padding, out_dtype=torch.uint8)
        want_u8 = ops.degrade(hr, kernels, scale, padding=padding, out_dtype=torch.uint8)
        assert (got_u8.cpu().int() - want_u8.int()).abs().max() <= 1


@pytest.mark.cuda
def test_cuda_rejects_mixed_devices():
    with pytest.raises(RealSRError, match="same device"):
        ops.degrade(torch.rand(1, 3, 8, 8, device="cuda"), torch.ones(3, 3) / 9, 2)


def _directional_change(f, x, direction):
    """f(x + d) - f(x) and f's gradient at x dotted with d, in float64."""
    x = x.detach().requires_grad_()
    value = f(x)
    (grad,) = torch.autograd.grad(value, x)
    return (f(x.detach() + direction) - value).double().item(), (grad.double() * direction.double()).sum().item()


@pytest.mark.parametrize("padding", ["symmetric", "zeros"])
def test_gradients_follow_linearity(rng, padding):
    """Without clamping, degrade is linear in hr and in kernels (the noise only adds a constant), so
    the gradient dotted with any direction d must equal the exact change f(x + d) - f(x)."""
    hr, kernels = random_case(rng, torch.float32, 5, 2)
    out_h, out_w = -(-hr.shape[2] // 2), -(-hr.shape[3] // 2)
    bank, index, offset, _ = random_noise(rng, 2, 3, out_h, out_w, torch.uint8)
    weights = torch.from_numpy(rng.standard_normal((2, 3, out_h, out_w))).float()
    noise = dict(noise_bank=bank, noise_index=index, noise_offset=offset, padding=padding, clamp=False)

    def by_hr(x):
        return (ops.degrade(x, kernels, 2, **noise) * weights).sum()

    def by_kernels(k):
        return (ops.degrade(hr, k, 2, **noise) * weights).sum()

    for f, x in ((by_hr, hr), (by_kernels, kernels)):
        change, predicted = _directional_change(f, x, torch.from_numpy(rng.standard_normal(x.shape)).float() * 0.1)
        assert predicted == pytest.approx(change, rel=1e-4, abs=1e-4)


def test_gradient_is_zero_where_clamped(rng):
    hr, _ = random_case(rng, torch.float32, 3, 1)
    hr = (hr * 3 - 1).requires_grad_()  # many samples blur outside [0, 1]
    out = ops.degrade(hr, torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]]), 1)  # identity kernel
    out.sum().backward()
    inside = ((hr.detach() >= 0) & (hr.detach() <= 1)).float()
    torch.testing.assert_close(hr.grad, inside)


@pytest.mark.parametrize("options", [dict(quantize=True), dict(out_dtype=torch.uint8)], ids=["quantize", "uint8"])
def test_gradient_through_rounding_raises(rng, options):
    hr, kernels = random_case(rng, torch.float32, 3, 2)
    with pytest.raises(RealSRError, match="gradient is zero"):
        ops.degrade(hr.requires_grad_(), kernels, 2, **options)


def test_library_alone_names_the_module_with_its_fakes():
    """Loaded without realsr_fast.ops, the library's ops say where their fakes live (the library's
    set_python_module) instead of failing obscurely; importing that module completes them."""
    import subprocess
    import sys

    code = (
        "import sys, torch, realsr_fast._C\n"
        "def trace():\n"
        "    meta = dict(device='meta')\n"
        "    return torch.ops.realsr_fast.degrade(torch.empty(2, 3, 9, 9, **meta), torch.empty(3, 3, **meta), 2).shape\n"
        "try:\n"
        "    trace()\n"
        "    sys.exit('traced without the fakes')\n"
        "except Exception as exc:\n"
        "    assert 'realsr_fast.ops' in str(exc), str(exc)\n"
        "import realsr_fast.ops\n"
        "assert trace() == (2, 3, 5, 5)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.cuda
def test_cuda_rejects_cpu_hr_with_cuda_kernels():
    """hr on the CPU but kernels on CUDA dispatch to the CUDA kernel: the device check must come first."""
    with pytest.raises(RealSRError, match="same device"):
        ops.degrade(torch.rand(1, 3, 8, 8), torch.ones(3, 3, device="cuda") / 9, 2)


@pytest.mark.cuda
def test_cuda_noise_call_does_not_sync():
    """degrade with noise on CUDA must not copy the indices to the host (it would block the stream)."""
    hr = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, device="cuda")
    kernels = torch.full((4, 9, 9), 1 / 81, device="cuda")
    bank = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8, device="cuda")
    index = torch.randint(0, 3, (4,), device="cuda")
    offset = torch.randint(0, 40 - 16 + 1, (4, 2), device="cuda")
    ops.degrade(hr, kernels, 4, noise_bank=bank, noise_index=index, noise_offset=offset)  # warm-up
    torch.cuda.set_sync_debug_mode("error")
    try:
        ops.degrade(hr, kernels, 4, noise_bank=bank, noise_index=index, noise_offset=offset)
    finally:
        torch.cuda.set_sync_debug_mode("default")
