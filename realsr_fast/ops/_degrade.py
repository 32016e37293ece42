"""`degrade`: blur + stride downsample + real-noise injection in one pass (RealSR's degradation,
docs/METHOD.md §3 and §5); its autograd formula (that of the stock composition), its fake, and
`degrade_reference`, the same composed from stock PyTorch."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

import realsr_fast.ops._library  # noqa: F401  (loads the compiled library, which defines the ops)
from realsr_fast.errors import RealSRError

PADDINGS = ("symmetric", "reflect", "replicate", "zeros")
_DEGRADE_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.uint8)


def degrade(
    hr: torch.Tensor,
    kernels: torch.Tensor,
    scale: int,
    *,
    noise_bank: Optional[torch.Tensor] = None,
    noise_index: Optional[torch.Tensor] = None,
    noise_offset: Optional[torch.Tensor] = None,
    padding: str = "symmetric",
    clamp: bool = True,
    quantize: bool = False,
    out_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Blurs, stride-downsamples and adds real noise in one pass.

    ``out[b,c,i,j] = sum_{u,v} K_b[u,v] * HR~[b, c, s*i + u - k//2, s*j + v - k//2] + N[b,c,i,j]``
    with ``HR~`` the image extended by ``padding`` and
    ``N[b,c,i,j] = bank[idx_b, c, oy_b + i, ox_b + j]`` minus its mean over the output-sized crop.

    Args:
        hr: ``(B, C, H, W)`` uint8 (read as value/255) or float16/bfloat16/float32 in [0, 1];
            any strides (contiguous or channels_last).
        kernels: ``(B, k, k)`` one kernel per sample, or ``(k, k)`` for all; odd or even k.
        scale: the stride s >= 1; the output is ``(B, C, ceil(H/s), ceil(W/s))``.
        noise_bank: ``(N, C, Ph, Pw)`` uint8 (value/255) or float noise patches, or None.
        noise_index: ``(B,)`` which bank patch each sample uses.
        noise_offset: ``(B, 2)`` top-left ``(oy, ox)`` of each sample's crop in its patch.
        padding: ``symmetric`` (scipy 'reflect', RealSR's), ``reflect`` (torch 'reflect'),
            ``replicate`` or ``zeros``.
        clamp: clamp to [0, 1].
        quantize: round to the nearest 1/255 (half to even).
        out_dtype: float32 (default), float16, bfloat16, or uint8 (clamped, returns round(255 x)).

    Returns:
        ``(B, C, ceil(H/s), ceil(W/s))`` tensor of ``out_dtype``, in ``hr``'s memory format.

    Raises:
        RealSRError: on inconsistent arguments (ranks, devices, out-of-range noise choices...).

    Example:
        >>> hr = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
        >>> degrade(hr, torch.full((5, 5), 1 / 25), 4).shape
        torch.Size([2, 3, 16, 16])
    """
    if kernels.is_floating_point() and kernels.dtype != torch.float32:
        kernels = kernels.float()
    try:
        return torch.ops.realsr_fast.degrade(
            hr, kernels, scale, noise_bank, noise_index, noise_offset, padding, clamp, quantize, out_dtype
        )
    except ValueError as exc:
        raise RealSRError(str(exc)) from None


def _degrade_setup(ctx, inputs, output):
    hr, kernels, scale, bank, index, offset, padding, clamp, quantize, out_dtype = inputs
    if bank is not None and bank.requires_grad:
        raise RealSRError("degrade: the noise bank is not differentiable; pass noise_bank.detach()")
    if (hr.requires_grad or kernels.requires_grad) and (quantize or out_dtype == torch.uint8):
        raise RealSRError(
            "degrade: quantize=True and out_dtype=torch.uint8 round the output, whose gradient is zero; "
            "use quantize=False and a float out_dtype to differentiate through degrade"
        )
    ctx.save_for_backward(hr, kernels, bank, index, offset)
    ctx.options = dict(padding=padding, clamp=clamp, out_dtype=out_dtype)
    ctx.scale = scale


def _degrade_backward(ctx, grad):
    """degrade is linear in hr and in kernels (up to the clamp, whose mask the recomputation keeps):
    the gradients are those of the stock composition, obtained by differentiating it."""
    hr, kernels, bank, index, offset = ctx.saved_tensors
    wants = ctx.needs_input_grad[:2]
    with torch.enable_grad():
        hr_ = hr.detach().requires_grad_(wants[0])
        kernels_ = kernels.detach().requires_grad_(wants[1])
        out = degrade_reference(hr_, kernels_, ctx.scale, noise_bank=bank, noise_index=index, noise_offset=offset,
                                **ctx.options)
        inputs = [t for t, want in zip((hr_, kernels_), wants) if want]
        grads = iter(torch.autograd.grad(out, inputs, grad))
    return (next(grads) if wants[0] else None, next(grads) if wants[1] else None, *([None] * 8))


torch.library.register_autograd("realsr_fast::degrade", _degrade_backward, setup_context=_degrade_setup)


def _output_size(size: int, scale: int) -> int:
    return (size + scale - 1) // scale


def _degrade_fake(hr, kernels, scale, noise_bank=None, noise_index=None, noise_offset=None,
                  padding="symmetric", clamp=True, quantize=False, out_dtype=None):
    torch._check(hr.dim() == 4, lambda: f"degrade: hr must be (B, C, H, W), got {tuple(hr.shape)}")
    torch._check(kernels.dim() in (2, 3), lambda: "degrade: kernels must be (k, k) or (B, k, k)")
    batch, channels, height, width = hr.shape
    size = (batch, channels, _output_size(height, scale), _output_size(width, scale))
    memory_format = torch._prims_common.suggest_memory_format(hr)
    return torch.empty(size, dtype=out_dtype or torch.float32, device=hr.device, memory_format=memory_format)


#: Fake (meta) implementations for torch.compile, registered by `realsr_fast.ops` (see its docstring).
FAKES = {
    "realsr_fast::degrade": _degrade_fake,
}


# --- Plain PyTorch composition (the baseline) ---------------------------------------------------


def symmetric_index(index: torch.Tensor, length: int) -> torch.Tensor:
    """Map any integer index into [0, length) by half-sample symmetric extension (period 2*length):
    scipy's 'reflect', MATLAB's 'symmetric', the padding RealSR blurs with (and `data.imresize`'s)."""
    folded = index.remainder(2 * length)
    return torch.where(folded < length, folded, 2 * length - 1 - folded)


def _symmetric_indices(start: int, stop: int, size: int, device: torch.device) -> torch.Tensor:
    """Source indices of positions start..stop-1 under half-sample symmetric extension."""
    return symmetric_index(torch.arange(start, stop, device=device), size)


def _extend(x: torch.Tensor, k: int, scale: int, padding: str) -> torch.Tensor:
    """Pads ``(N, C, H, W)`` so that a valid stride-``scale`` correlation gives ceil(H/s) rows."""
    height, width = x.shape[-2:]
    before = k // 2
    after_h = max(0, scale * (_output_size(height, scale) - 1) + k - 1 - before - (height - 1))
    after_w = max(0, scale * (_output_size(width, scale) - 1) + k - 1 - before - (width - 1))
    if padding == "symmetric":
        rows = _symmetric_indices(-before, height + after_h, height, x.device)
        cols = _symmetric_indices(-before, width + after_w, width, x.device)
        return x.index_select(-2, rows).index_select(-1, cols)
    mode = {"reflect": "reflect", "replicate": "replicate", "zeros": "constant"}[padding]
    return F.pad(x, (before, after_w, before, after_h), mode=mode)


def degrade_reference(
    hr: torch.Tensor,
    kernels: torch.Tensor,
    scale: int,
    *,
    noise_bank: Optional[torch.Tensor] = None,
    noise_index: Optional[torch.Tensor] = None,
    noise_offset: Optional[torch.Tensor] = None,
    padding: str = "symmetric",
    clamp: bool = True,
    quantize: bool = False,
    out_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """:func:`degrade` composed from stock PyTorch: pad, grouped strided conv2d, gathered noise.

    Same arguments and result (contiguous, to float rounding); allocates every intermediate.
    """
    batch, channels, height, width = hr.shape
    k = kernels.shape[-1]
    x = hr.float() / 255 if hr.dtype == torch.uint8 else hr.float()
    x = _extend(x, k, scale, padding)
    if kernels.dim() == 3:
        weight = kernels.float().repeat_interleave(channels, dim=0).unsqueeze(1)
        y = F.conv2d(x.reshape(1, batch * channels, *x.shape[-2:]), weight, stride=scale, groups=batch * channels)
    else:
        y = F.conv2d(x.reshape(batch * channels, 1, *x.shape[-2:]), kernels.float()[None, None], stride=scale)
    out_h, out_w = _output_size(height, scale), _output_size(width, scale)
    y = y.reshape(batch, channels, *y.shape[-2:])[..., :out_h, :out_w]
    if noise_bank is not None:
        rows = noise_offset[:, 0, None] + torch.arange(out_h, device=hr.device)
        cols = noise_offset[:, 1, None] + torch.arange(out_w, device=hr.device)
        crop = noise_bank[
            noise_index[:, None, None, None],
            torch.arange(channels, device=hr.device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ].float()
        if noise_bank.dtype == torch.uint8:
            crop = crop / 255
        y = y + (crop - crop.mean(dim=(2, 3), keepdim=True))
    if clamp or out_dtype == torch.uint8:
        y = y.clamp(0, 1)
    if out_dtype == torch.uint8:
        return torch.round(y * 255).to(torch.uint8)
    if quantize:
        y = torch.round(y * 255) / 255
    return y.to(out_dtype or torch.float32)
