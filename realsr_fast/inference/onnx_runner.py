"""ONNX Runtime backend: runs a graph from `realsr export onnx` tile by tile.

CUDAExecutionProvider is used when asked for a CUDA device and onnxruntime-gpu provides it,
else the CPU provider (which runs fp16 graphs through fp32 kernels, at fp32 speed).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.export.onnx_export import INPUT_NAME, OUTPUT_NAME, OnnxInfo, read_onnx_info
from realsr_fast.inference.backends import TileRunner, UpscalerSettings, cache_file
from realsr_fast.optional import import_optional

logger = logging.getLogger(__name__)

_NUMPY_IO = {"fp32": np.float32, "fp16": np.float16}


def providers_for(device: torch.device) -> list[str]:
    """ONNX Runtime execution providers for `device`, best first."""
    onnxruntime = _import_onnxruntime()

    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRunner(TileRunner):
    """An ONNX Runtime session as a tile function: (B, 3, h, w) float -> (B, 3, s*h, s*w) float32
    on the CPU, clamped to [0, 1]. A tile that is not finite (fp16 overflow) raises RealSRError.
    Tiles are budgeted against CPU memory (`device`), whichever provider runs them."""

    info: OnnxInfo
    scale: int

    def __init__(self, path: str | os.PathLike, device: torch.device = torch.device("cpu"),
                 threads: int | None = None) -> None:
        onnxruntime = _import_onnxruntime()
        self.info = read_onnx_info(path)
        self.scale, self.nf, self.precision = self.info.scale, self.info.nf, self.info.precision
        self.device = torch.device("cpu")
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


def load_runner(settings: UpscalerSettings, device: torch.device) -> OnnxRunner:
    """ONNX Runtime over the option `onnx` (a graph file), or over the model's graph in the cache
    (exported once).

    precision: auto (fp16 with CUDA, else fp32), fp32 or fp16; with a given graph the file's own."""
    precision = settings.precision
    if precision == "bf16":
        raise RealSRError("the onnx backend runs fp32 or fp16 graphs; use --precision fp32 "
                          "(or the torch backend for bf16)")
    onnx_path = settings.options["onnx"]
    if onnx_path is None:
        from realsr_fast.export.onnx_export import export_onnx
        from realsr_fast.models.loading import load_model, weights_sha256

        if precision == "auto":
            precision = "fp16" if device.type == "cuda" else "fp32"
        network = load_model(settings.model)
        onnx_path = cache_file("onnx", f"{weights_sha256(network.state_dict())[:16]}-{precision}.onnx")
        if not onnx_path.is_file():
            logger.warning("exporting %s to %s (once)", settings.model, onnx_path)
            export_onnx(network, onnx_path, precision=precision, tile_pad=settings.tile_pad)
    runner = OnnxRunner(onnx_path, device)
    if precision not in ("auto", runner.info.precision):
        raise RealSRError(f"{onnx_path} is an {runner.info.precision} graph, but --precision "
                          f"{precision} was asked for; export another graph or drop --precision")
    return runner


def _import_onnxruntime():
    return import_optional("onnxruntime", "onnx", "The ONNX Runtime backend")
