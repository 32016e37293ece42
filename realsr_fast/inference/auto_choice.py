"""`--backend auto`: the fastest correct backend and precision for the machine at hand.

The choice is an ordered list of rules (`RULES`); the first that applies decides. It depends only
on the settings and on what the machine is (devices, CPU features, installed packages), never on a
timing of the user's images, so the first run is as fast as the next. The rules, from the
measurements in benchmarks/README.md ("Upscale by size", "bf16 against the Winograd fp32 path"):
- a device asked for that torch does not run (`--device vulkan[:N]`): the backend that declares
  it (`Backend.devices` in `inference.backends.BACKENDS`: ncnn for Vulkan);
- CUDA: torch (fp16 by default, fp32 redo of overflowing tiles);
- `--precision bf16` / `fp16`: torch, the only backend with them;
- `--device auto` without CUDA but with a Vulkan GPU (AMD, Intel, Apple; not a software one)
  and an ncnn model: ncnn on that GPU;
- a CPU that computes bf16 natively (AVX512-BF16 or AMX), precision auto: torch bf16 (faster than
  the Winograd fp32 path where measured; `--precision fp32` for exact);
- a CPU the compiled Winograd ops have vector code for (AVX2 or AVX-512): torch fp32, its trunk as
  Winograd F(6x6, 3x3) (its speed against the other CPU engines: benchmarks/README.md);
- other CPUs (ARM and older x86): ncnn fp32 when it can run the model (its kernels are hand-written
  for NEON as well as x86), else torch fp32.
The choice and its reason are logged in one line.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable

import torch

from realsr_fast.device import cpu_has_native_bf16
from realsr_fast.errors import RealSRError
from realsr_fast.inference.backends import TORCH_DEVICE_KINDS, TileRunner, UpscalerSettings, device_kind, runs_on
from realsr_fast.inference.backends import load_runner as load_backend
from realsr_fast.ops import cpu_isa

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    """A backend and precision picked for the settings, with the reason in words."""

    backend: str
    precision: str
    device: str
    reason: str


def _ncnn_ready(model) -> str | None:
    """None when the ncnn backend can run `model` here, else why not."""
    from realsr_fast.inference.ncnn_runner import import_ncnn, ncnn_files

    try:
        import_ncnn()
        ncnn_files(model)
    except RealSRError as exc:
        return str(exc)
    return None


def _own_device_asked(settings: UpscalerSettings, device: torch.device) -> Choice | None:
    kind = device_kind(settings.device)
    if settings.device == "auto" or kind in TORCH_DEVICE_KINDS:
        return None
    backend = runs_on(kind)[0]
    return Choice(backend, settings.precision, settings.device, f"--device {settings.device} runs on {backend}")


def _cuda(settings: UpscalerSettings, device: torch.device) -> Choice | None:
    return Choice("torch", settings.precision, settings.device, "CUDA: torch") if device.type == "cuda" else None


def _reduced_precision_asked(settings: UpscalerSettings, device: torch.device) -> Choice | None:
    if settings.precision in ("bf16", "fp16"):
        return Choice("torch", settings.precision, settings.device, f"--precision {settings.precision} runs on torch")
    return None


def _vulkan_gpu(settings: UpscalerSettings, device: torch.device) -> Choice | None:
    if settings.device != "auto" or settings.precision != "auto" or _ncnn_ready(settings.model) is not None:
        return None
    from realsr_fast.inference.ncnn_runner import vulkan_index

    gpu = vulkan_index("auto")
    return None if gpu is None else Choice("ncnn", "auto", f"vulkan:{gpu}", "a Vulkan GPU and no CUDA: ncnn on it")


def _native_bf16(settings: UpscalerSettings, device: torch.device) -> Choice | None:
    if settings.precision == "auto" and cpu_has_native_bf16():
        return Choice("torch", "bf16", settings.device, "this CPU computes bf16 natively (AVX512-BF16/AMX): "
                      "torch bf16, faster than fp32; --precision fp32 for exact")
    return None


def _winograd_cpu(settings: UpscalerSettings, device: torch.device) -> Choice | None:
    isa = cpu_isa()
    if isa == "baseline":
        return None
    return Choice("torch", "fp32", settings.device, f"fp32 on the CPU: torch with its Winograd trunk ({isa})")


def _other_cpu(settings: UpscalerSettings, device: torch.device) -> Choice:
    why_not = _ncnn_ready(settings.model)
    if why_not is None:
        return Choice("ncnn", "fp32", "cpu", "fp32 on a CPU without AVX2: ncnn's hand-written kernels")
    return Choice("torch", "fp32", settings.device, f"fp32 on the CPU: torch, as ncnn cannot run it ({why_not})")


Rule = Callable[[UpscalerSettings, torch.device], "Choice | None"]

#: The rules in order; the first that returns a choice decides (the last always does).
RULES: tuple[Rule, ...] = (_own_device_asked, _cuda, _reduced_precision_asked, _vulkan_gpu, _native_bf16,
                           _winograd_cpu, _other_cpu)


def choose(settings: UpscalerSettings, device: torch.device) -> Choice:
    """What `--backend auto` runs for `settings` on the resolved `device`."""
    for rule in RULES:
        choice = rule(settings, device)
        if choice is not None:
            return choice
    raise AssertionError("the last rule always chooses")


def load_runner(settings: UpscalerSettings, device: torch.device) -> TileRunner:
    """The runner of the chosen backend, after one log line saying what was chosen and why."""
    choice = choose(settings, device)
    logger.warning("backend auto: %s %s on %s (%s)", choice.backend, choice.precision,
                   device.type if choice.device == "auto" else choice.device, choice.reason)
    return load_backend(replace(settings, backend=choice.backend, precision=choice.precision,
                                device=choice.device), device)
