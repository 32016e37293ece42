"""ONNX export of an RRDBNet: dynamic batch, height and width; fp32, or fp16 with explicit casts.

The graph has one input `input` (B, 3, H, W) and one output `output` (B, 3, s*H, s*W). An fp16
graph keeps fp32 input and output by default (casts inside the graph) and runs the units chosen by
`precision.overflowing_units` in fp32 (see `realsr_fast.export.precision`). Metadata (ONNX
metadata_props, all strings): format, scale, nf, precision, io_dtype, fp32_units, tile_pad,
model_sha256 (of the weights, see `models.loading.weights_sha256`), opset.

Uses torch's TorchScript exporter (`dynamo=False`), deprecated in torch 2.14 but still shipped: it
traces the fixed RRDBNet graph reliably and keeps the module path in node names
(`/model/RRDB_trunk.0/...`, which the fp32-unit tests read). The dynamo exporter needs the
`onnxscript` package and names nodes differently; moving to it waits for a check that it gives the
same graph (ops, casts, dynamic axes).
"""
from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from realsr_fast.errors import RealSRError
from realsr_fast.export.precision import (
    activation_peaks,
    calibration_inputs,
    mixed_precision,
    overflowing_units,
    unit_names,
)
from realsr_fast.io import atomic_path
from realsr_fast.models.formats import FORMAT_TAG
from realsr_fast.models.loading import weights_sha256
from realsr_fast.models.rrdbnet import RRDBNet
from realsr_fast.optional import import_optional
from realsr_fast.tiling import DEFAULT_TILE_PAD

INPUT_NAME = "input"
OUTPUT_NAME = "output"
MIN_OPSET = 17
PRECISIONS = ("fp32", "fp16")
IO_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


@dataclass(frozen=True)
class OnnxInfo:
    """What an exported graph holds, as written in (and read back from) its metadata."""

    scale: int
    nf: int
    precision: str
    io_dtype: str
    fp32_units: tuple[str, ...]
    tile_pad: int
    model_sha256: str
    opset: int

    def metadata(self) -> dict[str, str]:
        return {"format": FORMAT_TAG, "scale": str(self.scale), "nf": str(self.nf),
                "precision": self.precision, "io_dtype": self.io_dtype,
                "fp32_units": ",".join(self.fp32_units), "tile_pad": str(self.tile_pad),
                "model_sha256": self.model_sha256, "opset": str(self.opset)}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str | os.PathLike) -> "OnnxInfo":
        if meta.get("format") != FORMAT_TAG:
            raise RealSRError(f"{source} is not an ONNX model exported by realsr_fast (no "
                              "'format: realsr_fast' metadata); export one with "
                              "`realsr export onnx -o model.onnx`")
        try:
            return cls(scale=int(meta["scale"]), nf=int(meta["nf"]), precision=meta["precision"],
                       io_dtype=meta["io_dtype"],
                       fp32_units=tuple(u for u in meta["fp32_units"].split(",") if u),
                       tile_pad=int(meta["tile_pad"]), model_sha256=meta["model_sha256"],
                       opset=int(meta["opset"]))
        except (KeyError, ValueError) as exc:
            raise RealSRError(f"{source} has incomplete realsr_fast metadata ({exc}); export it "
                              "again with `realsr export onnx`") from exc


def choose_fp32_units(model: RRDBNet) -> list[str]:
    """The units an fp16 graph of this fp32 model keeps in fp32, measured on calibration inputs."""
    return overflowing_units(activation_peaks(model, calibration_inputs()))


def export_onnx(model: RRDBNet, path: str | os.PathLike, *, precision: str = "fp32",
                opset: int = MIN_OPSET, tile_pad: int = DEFAULT_TILE_PAD, io_dtype: str = "fp32",
                fp32_units: Sequence[str] | None = None) -> OnnxInfo:
    """Export the fp32 `model` to `path` (written atomically) and check the graph.

    precision fp16 computes in fp16 except `fp32_units` (default: measured, `choose_fp32_units`);
    precision fp32 computes every unit in fp32. `io_dtype` is the graph's input/output type (fp32
    by default, fp16 for TensorRT's fp16 I/O), cast inside the graph. The model may sit on any
    device; the export runs on a CPU copy.
    """
    if precision not in PRECISIONS:
        raise RealSRError(f"unknown ONNX precision {precision!r}; use {' or '.join(PRECISIONS)}")
    if io_dtype not in IO_DTYPES:
        raise RealSRError(f"unknown I/O type {io_dtype!r}; use {' or '.join(IO_DTYPES)}")
    if opset < MIN_OPSET:
        raise RealSRError(f"opset {opset} is too old; use {MIN_OPSET} or newer")
    model = copy.deepcopy(model).float().cpu().eval()
    if precision == "fp16":
        units = tuple(choose_fp32_units(model) if fp32_units is None else fp32_units)
        graph = mixed_precision(model, units, IO_DTYPES[io_dtype])
    else:
        units = ()
        graph = mixed_precision(model, unit_names(model), IO_DTYPES[io_dtype]) if io_dtype == "fp16" else model
    info = OnnxInfo(scale=model.scale, nf=model.nf, precision=precision, io_dtype=io_dtype,
                    fp32_units=units, tile_pad=tile_pad,
                    model_sha256=weights_sha256(model.state_dict()), opset=opset)
    _write(graph, Path(path), info)
    return info


def _write(graph: torch.nn.Module, path: Path, info: OnnxInfo) -> None:
    onnx = import_optional("onnx", "onnx", "ONNX export")

    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with atomic_path(path) as temporary:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
            torch.onnx.export(
                graph, (example.to(IO_DTYPES[info.io_dtype]),), str(temporary), dynamo=False,
                opset_version=info.opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                              OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}})
        proto = onnx.load(str(temporary))
        onnx.helper.set_model_props(proto, info.metadata())
        onnx.checker.check_model(proto)
        onnx.save(proto, str(temporary))


def read_onnx_info(path: str | os.PathLike) -> OnnxInfo:
    """The realsr_fast metadata of an exported graph (without loading its weights)."""
    onnx = import_optional("onnx", "onnx", "Reading an ONNX model")

    if not Path(path).is_file():
        raise RealSRError(f"ONNX model {path} does not exist; create it with "
                          f"`realsr export onnx -o {path}`")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise RealSRError(f"{path} is not a readable ONNX model ({exc})") from exc
    return OnnxInfo.from_metadata({p.key: p.value for p in proto.metadata_props}, path)
