"""Read an ncnn RRDBNet model (`.param` text + `.bin` weights) into an RRDBNet state dict.

The `.bin` file holds, for each Convolution layer in `.param` order, a 4-byte storage tag
(fp16 or fp32) followed by the (out, in, kh, kw) weights, then the bias as raw float32 when the
layer has one (docs/METHOD.md §9). Layers are matched to RRDBNet parameters by their order in the
graph (conv_first, the dense-block convs, trunk_conv, upconvs, HRconv, conv_last) and every
shape is checked, so a file that is not an RRDBNet fails with a clear error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.models.rrdbnet import parameter_shapes

_PARAM_MAGIC = "7767517"
_TAG_FP16 = 0x01306B47
_TAG_FP32 = 0x00000000


@dataclass(frozen=True)
class NcnnConv:
    """One Convolution layer of a `.param` file."""

    name: str
    out_channels: int
    kernel: int
    bias: bool
    weight_size: int

    @property
    def in_channels(self) -> int:
        return self.weight_size // (self.out_channels * self.kernel * self.kernel)


@dataclass(frozen=True)
class NcnnGraph:
    """What RRDBNet needs from a `.param` file: its convolutions in order, and the upsamplings."""

    convs: list[NcnnConv]
    num_interp: int
    layer_types: frozenset[str] = frozenset()


def parse_param(path: str | os.PathLike) -> NcnnGraph:
    """Parse an ncnn `.param` text file (only the Convolution and Interp layers matter here)."""
    try:
        lines = open(path, encoding="utf-8").read().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise RealSRError(f"cannot read ncnn param file {path}: {exc}") from exc
    if not lines or lines[0].strip() != _PARAM_MAGIC:
        raise RealSRError(f"{path} is not an ncnn .param file (first line should be {_PARAM_MAGIC})")
    convs: list[NcnnConv] = []
    num_interp = 0
    types: set[str] = set()
    for line in lines[2:]:
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 4 or not (fields[2].isdigit() and fields[3].isdigit()):
            raise RealSRError(f"{path}: malformed layer line {line!r}")
        layer_type, name, num_in, num_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        types.add(layer_type)
        params = dict(kv.split("=", 1) for kv in fields[4 + num_in + num_out:] if "=" in kv)
        if layer_type == "Convolution":
            try:
                convs.append(NcnnConv(
                    name=name, out_channels=int(params["0"]), kernel=int(params.get("1", "1")),
                    bias=params.get("5", "0") == "1", weight_size=int(params["6"])))
            except (KeyError, ValueError) as exc:
                raise RealSRError(f"{path}: Convolution {name} lacks a valid parameter {exc}") from exc
        elif layer_type == "Interp":
            num_interp += 1
        elif layer_type.startswith("Convolution") or layer_type == "Deconvolution":
            raise RealSRError(f"{path}: layer {name} has type {layer_type}; an RRDBNet has only "
                              "plain Convolution layers")
    return NcnnGraph(convs, num_interp, frozenset(types))


def rrdbnet_config_from_graph(graph: NcnnGraph, path: str | os.PathLike) -> dict[str, int]:
    """Infer RRDBNet's (in_nc, out_nc, nf, nb, gc, scale) from the conv count and shapes."""
    convs = graph.convs
    trunk_convs = len(convs) - 4 - graph.num_interp  # minus conv_first/trunk/HRconv/last + ups
    if len(convs) < 5 or trunk_convs < 0 or trunk_convs % 15:
        if {"PReLU", "PixelShuffle"} <= graph.layer_types:
            raise RealSRError(f"{path} is an SRVGGNetCompact (Real-ESRGAN compact / anime video: PReLU and "
                              "PixelShuffle layers), not an RRDBNet; its .pth runs on the torch backend with spandrel "
                              "installed (pip install spandrel)")
        raise RealSRError(f"{path}: {len(convs)} convolutions and {graph.num_interp} upsamplings "
                          "do not form an RRDBNet (4 + 15 * nb + log2(scale) convolutions)")
    return {"in_nc": convs[0].in_channels, "out_nc": convs[-1].out_channels,
            "nf": convs[0].out_channels, "nb": trunk_convs // 15,
            "gc": convs[1].out_channels if trunk_convs else 32, "scale": 2 ** graph.num_interp}


def _read_conv(data: memoryview, offset: int, conv: NcnnConv, path: str | os.PathLike,
               ) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Read one conv's (flat float32) weights and bias starting at `offset` of the `.bin` data."""
    def need(nbytes: int) -> None:
        if offset + nbytes > len(data):
            raise RealSRError(f"{path} is truncated: layer {conv.name} needs bytes up to "
                              f"{offset + nbytes}, the file has {len(data)}")

    need(4)
    tag = int(np.frombuffer(data, np.uint32, 1, offset)[0])
    offset += 4
    if tag == _TAG_FP16:
        nbytes = (conv.weight_size * 2 + 3) // 4 * 4  # fp16 data is padded to 4 bytes
        need(nbytes)
        weight = np.frombuffer(data, np.float16, conv.weight_size, offset).astype(np.float32)
    elif tag == _TAG_FP32:
        nbytes = conv.weight_size * 4
        need(nbytes)
        weight = np.frombuffer(data, np.float32, conv.weight_size, offset).copy()
    else:
        raise RealSRError(f"{path}: layer {conv.name} has weight storage tag {tag:#010x}; only "
                          f"fp16 ({_TAG_FP16:#010x}) and fp32 (0) weights are supported")
    offset += nbytes
    bias = None
    if conv.bias:
        need(conv.out_channels * 4)
        bias = np.frombuffer(data, np.float32, conv.out_channels, offset).copy()
        offset += conv.out_channels * 4
    return weight, bias, offset


def load_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike,
              ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Read an ncnn RRDBNet into (state dict with RRDBNet names, RRDBNet config).

    The state dict is float32 (fp16 weights are widened exactly) and matches
    `RRDBNet(**config).state_dict()` in names and shapes.
    """
    graph = parse_param(param_path)
    config = rrdbnet_config_from_graph(graph, param_path)
    expected = parameter_shapes(**config)
    weight_names = [name for name in expected if name.endswith(".weight")]
    try:
        data = memoryview(open(bin_path, "rb").read())
    except OSError as exc:
        raise RealSRError(f"cannot read ncnn weight file {bin_path}: {exc}") from exc
    state: dict[str, torch.Tensor] = {}
    offset = 0
    for conv, weight_name in zip(graph.convs, weight_names):
        shape = expected[weight_name]
        if (conv.out_channels, conv.in_channels, conv.kernel, conv.kernel) != tuple(shape) \
                or conv.weight_size != shape.numel() or not conv.bias:
            raise RealSRError(
                f"{param_path}: layer {conv.name} is {conv.out_channels}x{conv.in_channels}x"
                f"{conv.kernel}x{conv.kernel} (bias {conv.bias}), expected {tuple(shape)} with a "
                f"bias for RRDBNet's {weight_name}")
        weight, bias, offset = _read_conv(data, offset, conv, bin_path)
        state[weight_name] = torch.from_numpy(weight.reshape(shape))
        state[weight_name[:-len("weight")] + "bias"] = torch.from_numpy(bias)
    if offset != len(data):
        raise RealSRError(f"{bin_path} has {len(data) - offset} bytes after the last layer; "
                          f"it does not belong to {param_path}")
    return state, config
