"""Network interpolation (ESRGAN's and Real-ESRGAN's DNI): a strength knob between two models.

Every parameter becomes `w = (1 - s) * w_base + s * w_model`, with the base a PSNR-oriented model
(smooth, faithful) and the model a GAN one (sharp, invented texture) of the same architecture:
s = 1 is the GAN model alone, s = 0 the base alone, and values between trade texture for
fidelity smoothly (Wang et al., ESRGAN, section 3.4). The default pair is RealSR's `df2k` over
`esrgan-psnr` (ESRGAN's PSNR model, where RealSR's training started; fetched on first use). Any
two files of one shape work, e.g. a `realsr adapt` model over `df2k`, the model it started from.

`blended_model_file` writes the blend once as a safetensors checkpoint in the cache (named by
both weights' hashes and s), so every backend loads it like any other weights file.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch

from realsr_fast.errors import RealSRError
from realsr_fast.models.formats import Config, StateDict, save_safetensors
from realsr_fast.models.loading import weights_sha256
from realsr_fast.models.zoo import cache_dir, resolve_weights


def check_strength(strength: float) -> float:
    """`strength` as a float in [0, 1], or RealSRError."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise RealSRError(f"--strength must be a number from 0 to 1, got {strength!r}") from None
    if not 0 <= value <= 1:  # also false for nan
        raise RealSRError(f"--strength must be from 0 to 1, got {strength}")
    return value


def interpolate_state(a: StateDict, b: StateDict, s: float) -> StateDict:
    """`(1 - s) * a + s * b` for every tensor, computed in float64 and stored as float32.

    `a` and `b` must hold the same names with the same shapes (RealSRError naming the first
    difference). s = 0 returns copies of `a`'s tensors exactly, s = 1 of `b`'s.
    """
    s = check_strength(s)
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if missing or extra:
        names = ", ".join((missing or extra)[:3])
        raise RealSRError(f"cannot interpolate two different networks: {len(missing) + len(extra)} "
                          f"parameter(s) are in only one of them ({names}...)")
    blended = {}
    for name in a:
        ta, tb = a[name], b[name]
        if ta.shape != tb.shape:
            raise RealSRError(f"cannot interpolate two networks of different shapes: {name} is "
                              f"{tuple(ta.shape)} in one and {tuple(tb.shape)} in the other")
        if s == 0:
            blended[name] = ta.detach().to(torch.float32).clone()
        elif s == 1:
            blended[name] = tb.detach().to(torch.float32).clone()
        else:
            mixed = (1 - s) * ta.detach().double() + s * tb.detach().double()
            blended[name] = mixed.to(torch.float32)
    return blended


def blend_weights(model: str | os.PathLike, base: str | os.PathLike, strength: float) -> tuple[StateDict, Config]:
    """(state, config) of `model` at `strength` over `base` (names or weights files).

    Strength 1 reads `model` only (the base is never fetched); 0 reads `base` only.
    RealSRError when the two are not the same architecture (scale, width, depth).
    """
    strength = check_strength(strength)
    if strength == 1:
        return resolve_weights(model)
    base_state, base_config = resolve_weights(base)
    if strength == 0:
        return base_state, base_config
    state, config = resolve_weights(model)
    _check_same_network(model, config, base, base_config)
    return interpolate_state(base_state, state, strength), config


def _check_same_network(model: object, config: Config, base: object, base_config: Config) -> None:
    def describe(c: Config) -> str:
        return f"x{c['scale']}, nf {c['nf']}, nb {c['nb']}, gc {c['gc']}"

    if config != base_config:
        raise RealSRError(f"--strength blends {model} with {base}, but they are different networks "
                          f"({describe(config)} against {describe(base_config)}); name a base of "
                          "the same architecture with --strength-base")


def blended_model_file(model: str | os.PathLike, base: str | os.PathLike, strength: float) -> Path:
    """A safetensors file holding `blend_weights(model, base, strength)`, made once and cached.

    The file lives in `<cache>/models/`, named by both weights' hashes and the strength, so a
    changed file gets a new blend; when the cache cannot be written it goes to the temporary
    folder (with a warning).
    """
    strength = check_strength(strength)
    state, config = resolve_weights(model)
    base_state, base_config = resolve_weights(base)
    name = (f"blend-{weights_sha256(base_state)[:12]}-{weights_sha256(state)[:12]}-"
            f"s{strength:.6f}.safetensors")
    target = cache_dir() / "models" / name
    if target.is_file():
        return target
    _check_same_network(model, config, base, base_config)
    blended = interpolate_state(base_state, state, strength)
    metadata = {"model": str(model), "strength_base": str(base), "strength": repr(strength)}
    try:
        save_safetensors(target, blended, config, metadata)
    except (OSError, RealSRError) as exc:
        fallback = Path(tempfile.gettempdir()) / "realsr_fast" / name
        warnings.warn(f"cannot cache the blended model in {target.parent} ({exc}); writing it to "
                      f"{fallback}", stacklevel=2)
        save_safetensors(fallback, blended, config, metadata)
        return fallback
    return target
