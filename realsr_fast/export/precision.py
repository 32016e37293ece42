"""Mixed precision for an fp16 RRDBNet: which units stay fp32, and the model that runs so.

fp16 RRDBNet can overflow (inf/NaN, black tiles; first seen at conv_up1 of Real-ESRGAN models,
docs/METHOD.md §10). Whether it does depends on the weights, so the fp32 units are measured per
model at export: the fp32 model runs on calibration inputs (crops of the sample photos plus bright,
saturated and high-contrast synthetic images) and every unit whose activations (its input, any
conv output inside it, and its own output) reach FP16_MAX / HEADROOM stays fp32.

How this plays out for the shipped df2k model (no unit needs fp32) is measured in
benchmarks/README.md, "fp16 units".

A "unit" is a top-level block: conv_first, RRDB_trunk.N, trunk_conv, upconvN, HRconv, conv_last.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from realsr_fast.models.rrdbnet import RRDBNet

#: The largest finite float16.
FP16_MAX = 65504.0
#: A unit whose calibration activations reach FP16_MAX / HEADROOM stays fp32 (unseen inputs can
#: go higher than the calibration set).
HEADROOM = 16.0
#: Side of the calibration crops (LR pixels).
CALIBRATION_SIZE = 32


def unit_names(model: RRDBNet) -> list[str]:
    """The top-level units of the network in forward order."""
    return (["conv_first"] + [f"RRDB_trunk.{i}" for i in range(len(model.RRDB_trunk))]
            + ["trunk_conv"] + [f"upconv{i}" for i in range(1, model.num_upsamples + 1)]
            + ["HRconv", "conv_last"])


def calibration_inputs(size: int = CALIBRATION_SIZE) -> torch.Tensor:
    """(6, 3, size, size) float32 in [0, 1]: centre crops of the three sample photos, then white,
    saturated red and a 1-pixel checkerboard (the bright and high-contrast extremes)."""
    from realsr_fast.io import image_to_tensor, read_image

    samples = Path(__file__).resolve().parent.parent / "samples"
    crops = []
    for name in ("astronaut", "coffee", "chelsea"):
        image = read_image(samples / f"{name}.png")[..., :3]
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crops.append(image_to_tensor(np.ascontiguousarray(
            image[top:top + size, left:left + size]))[0])
    white = torch.ones(3, size, size)
    red = torch.zeros(3, size, size)
    red[0] = 1
    grid = torch.arange(size)
    checker = ((grid[:, None] + grid[None]) % 2).float().expand(3, -1, -1)
    return torch.stack(crops + [white, red, checker])


def activation_peaks(model: RRDBNet, inputs: torch.Tensor) -> dict[str, float]:
    """The largest |activation| of each unit (its input, its conv outputs and its output) on
    `inputs` (N, 3, h, w), running the fp32 `model` one input at a time. The input counts because
    an fp16 unit casts it to fp16: after a unit kept in fp32 it may hold more than fp16 can."""
    units = dict(zip(unit_names(model), (model.get_submodule(n) for n in unit_names(model))))
    peaks = dict.fromkeys(units, 0.0)

    def recorder(unit: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            peaks[unit] = max(peaks[unit], float(output.detach().abs().max()))
        return hook

    def input_recorder(unit: str):
        def hook(module: nn.Module, args: tuple) -> None:
            peaks[unit] = max(peaks[unit], float(args[0].detach().abs().max()))
        return hook

    handles = [sub.register_forward_hook(recorder(unit)) for unit, module in units.items()
               for sub in module.modules() if isinstance(sub, nn.Conv2d) or sub is module]
    handles += [module.register_forward_pre_hook(input_recorder(unit)) for unit, module in units.items()]
    try:
        with torch.inference_mode():
            for x in inputs.float():
                model(x[None])
    finally:
        for handle in handles:
            handle.remove()
    return peaks


def overflowing_units(peaks: dict[str, float], headroom: float = HEADROOM) -> list[str]:
    """The units whose peak activation reaches FP16_MAX / headroom, in forward order."""
    return [unit for unit, peak in peaks.items() if not peak < FP16_MAX / headroom]


class InDtype(nn.Module):
    """Runs `module` in `dtype`: (B, C, H, W) of any float dtype -> module's output in `dtype`."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x if x.dtype == self.dtype else x.to(self.dtype))


class OutDtype(nn.Module):
    """Casts the output of `model` to `dtype` (the graph's output type)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y if y.dtype == self.dtype else y.to(self.dtype)


def mixed_precision(model: RRDBNet, fp32_units: Iterable[str],
                    io_dtype: torch.dtype = torch.float32) -> nn.Module:
    """A copy of `model` computing in fp16 except `fp32_units`, with `io_dtype` input and output:
    (B, 3, H, W) io_dtype -> (B, 3, s*H, s*W) io_dtype. Each unit casts its input to its own dtype,
    so every cast is explicit in an exported graph."""
    keep = set(fp32_units)
    unknown = keep - set(unit_names(model))
    if unknown:
        raise ValueError(f"not units of this RRDBNet: {sorted(unknown)}; units are "
                         f"{', '.join(unit_names(model))}")
    mixed = copy.deepcopy(model).eval()
    for name in unit_names(mixed):
        owner_name, _, child = name.rpartition(".")
        owner = mixed.get_submodule(owner_name) if owner_name else mixed
        dtype = torch.float32 if name in keep else torch.float16
        setattr(owner, child, InDtype(getattr(owner, child), dtype))
    return OutDtype(mixed, io_dtype)
