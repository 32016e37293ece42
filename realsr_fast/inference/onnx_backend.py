"""ONNX Runtime backend: runs a graph from `realsr export onnx` tile by tile.

CUDAExecutionProvider is used when asked for a CUDA device and onnxruntime-gpu provides it,
else the CPU provider (which runs fp16 graphs through fp32 kernels, at fp32 speed).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.export.onnx_export import INPUT_NAME, OUTPUT_NAME, OnnxInfo, read_onnx_info
from realsr_fast.optional import import_optional

_NUMPY_IO = {"fp32": np.float32, "fp16": np.float16}


def providers_for(device: torch.device) -> list[str]:
    """ONNX Runtime execution providers for `device`, best first."""
    onnxruntime = _import_onnxruntime()

    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRunner:
    """An ONNX Runtime session as a tile function: (B, 3, h, w) float -> (B, 3, s*h, s*w) float32
    on the CPU, clamped to [0, 1]. A tile that is not finite (fp16 overflow) raises RealSRError."""

    info: OnnxInfo
    scale: int

    def __init__(self, path: str | os.PathLike, device: torch.device = torch.device("cpu"),
                 threads: int | None = None) -> None:
        onnxruntime = _import_onnxruntime()
        self.info = read_onnx_info(path)
        self.scale = self.info.scale
        self.path = path
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.providers = providers_for(device)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=self.providers)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = x.detach().to("cpu", torch.float32).numpy().astype(_NUMPY_IO[self.info.io_dtype])
        y = torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: feed})[0]).float()
        if not bool(torch.isfinite(y).all()):
            raise RealSRError(f"{self.path} gave a non-finite tile ({self.info.precision} "
                              "overflow); export an fp32 graph (realsr export onnx --precision "
                              "fp32) for this model")
        return y.clamp_(0, 1)


def _import_onnxruntime():
    return import_optional("onnxruntime", "onnx", "The ONNX Runtime backend")
