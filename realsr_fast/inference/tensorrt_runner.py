"""TensorRT backend: runs an engine from `realsr export tensorrt` tile by tile on the GPU.

Tiles stay on the GPU: input and output are torch CUDA tensors in the engine's I/O type (fp16),
bound with `set_tensor_address` and run with `execute_async_v3` on torch's current stream;
optionally each tile shape is captured once as a CUDA graph and replayed. Tiles smaller than the
profile's minimum are padded (edge replicate) and the output cropped. A tile that is not finite
(fp16 overflow, docs/METHOD.md §10) is redone by `fallback` (the torch fp32 runner).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from realsr_fast.errors import RealSRError
from realsr_fast.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from realsr_fast.export.tensorrt_build import (
    DEFAULT_PROFILE,
    Profile,
    Sidecar,
    Target,
    check_sidecar,
    export_tensorrt,
    import_tensorrt,
    read_sidecar,
    sidecar_path,
)
from realsr_fast.inference.backends import TileRunner, UpscalerSettings, cache_file
from realsr_fast.tiling.tiler import TileFn

logger = logging.getLogger(__name__)


def pad_to_side(x: torch.Tensor, side: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, max(h, side), max(w, side)), repeating the last row/column."""
    bottom, right = max(side - x.shape[2], 0), max(side - x.shape[3], 0)
    if bottom == 0 and right == 0:
        return x
    return F.pad(x, (0, right, 0, bottom), mode="replicate")


class TensorRTRunner(TileRunner):
    """A deserialized engine as a tile function: (B, 3, h, w) float on the GPU ->
    (B, 3, s*h, s*w) float32 on the GPU, clamped to [0, 1]; h, w <= the profile's max."""

    sidecar: Sidecar
    scale: int

    def __init__(self, engine_path: str | os.PathLike, device: torch.device,
                 model_sha256: str | None = None, cuda_graph: bool = False,
                 fallback: TileFn | None = None) -> None:
        trt = import_tensorrt()
        self.sidecar = read_sidecar(engine_path)
        check_sidecar(self.sidecar, Target.current(device.index or 0), engine_path, model_sha256)
        self.scale, self.device, self.precision = self.sidecar.scale, device, "fp16"
        self.cuda_graph, self.fallback = cuda_graph, fallback
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(device):
            self._engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
            if self._engine is None:
                raise RealSRError(f"TensorRT could not load {engine_path}; rebuild it with "
                                  "`realsr export tensorrt` or --rebuild-engine")
            self._context = self._engine.create_execution_context()
        dtypes = {trt.DataType.HALF: torch.float16, trt.DataType.FLOAT: torch.float32}
        self.input_dtype = dtypes[self._engine.get_tensor_dtype(INPUT_NAME)]
        self.output_dtype = dtypes[self._engine.get_tensor_dtype(OUTPUT_NAME)]
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor,
                                                  torch.Tensor]] = {}

    def _enqueue(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._context.set_input_shape(INPUT_NAME, tuple(x.shape))
        self._context.set_tensor_address(INPUT_NAME, x.data_ptr())
        self._context.set_tensor_address(OUTPUT_NAME, y.data_ptr())
        if not self._context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError(f"TensorRT failed to run a {tuple(x.shape)} tile")

    def _output_for(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], 3, self.scale * x.shape[2], self.scale * x.shape[3])
        return torch.empty(shape, dtype=self.output_dtype, device=self.device)

    def _run_graph(self, x: torch.Tensor) -> torch.Tensor:
        """Replay the CUDA graph of x's shape (captured at its first use)."""
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in, static_out = x.clone(), self._output_for(x)
            self._enqueue(static_in, static_out)  # TensorRT allocates on the first run: not in a graph
            torch.cuda.current_stream(self.device).synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._enqueue(static_in, static_out)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        self._context.set_input_shape(INPUT_NAME, key)
        graph.replay()
        return static_out.clone()

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) engine-typed contiguous CUDA tensor -> (1, 3, s*h, s*w) engine-typed."""
        if self.cuda_graph:
            return self._run_graph(x)
        y = self._output_for(x)
        self._enqueue(x, y)
        return y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        profile = self.sidecar.profile
        if max(height, width) > profile.max:
            raise RealSRError(f"a {height}x{width} tile exceeds the engine's profile (max "
                              f"{profile.max} px); use a smaller --tile")
        outputs = []
        for item in x.to(self.device).split(1):
            padded = pad_to_side(item, profile.min).to(self.input_dtype).contiguous()
            y = self._run(padded)[:, :, :self.scale * height, :self.scale * width].float()
            if not bool(torch.isfinite(y).all()):
                if self.fallback is None:
                    raise RealSRError("the TensorRT engine overflowed in fp16 on a tile")
                y = self.fallback(item).to(self.device)
            outputs.append(y)
        return torch.cat(outputs).clamp_(0, 1)

    def tile_for(self, tile: int | None, pad: int) -> int:
        """The engine's profile bounds the tile: the largest that fits, or `tile` if it fits (so
        the automatic, memory-based size, which would need `nf`, is never used here)."""
        return self.sidecar.profile.tile_for(pad, tile)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def load_runner(settings: UpscalerSettings, device: torch.device) -> TensorRTRunner:
    """TensorRT over `settings.engine` (built there when missing or when `rebuild_engine`), or
    over the model's engine for this GPU in the cache. A tile that overflows in fp16 is redone in
    fp32 by the torch runner."""
    from realsr_fast.inference.torch_runner import TorchRunner
    from realsr_fast.models.loading import load_model, weights_sha256

    if settings.precision not in ("auto", "fp16"):
        raise RealSRError("TensorRT engines run in fp16 (with fp32 where needed); drop "
                          "--precision or use --backend torch / onnx for fp32")
    if device.type != "cuda":
        raise RealSRError("the tensorrt backend runs on an NVIDIA GPU; use --device cuda (or "
                          "auto), or --backend onnx / torch on the CPU")
    target = Target.current(device.index or 0)
    network = load_model(settings.model)
    sha = weights_sha256(network.state_dict())
    engine_path = Path(settings.engine) if settings.engine is not None else cache_file(
        "tensorrt", f"{sha[:16]}-{_slug(target.gpu_name)}-trt{target.tensorrt_version}.engine")
    if settings.rebuild_engine or not engine_path.is_file() or not sidecar_path(engine_path).is_file():
        profile = Profile(*DEFAULT_PROFILE)
        logger.warning("building the TensorRT engine %s (inputs %d-%d px; takes minutes)",
                       engine_path, profile.min, profile.max)
        export_tensorrt(network, engine_path, profile, engine_path.with_suffix(".timing"),
                        settings.tile_pad, device.index or 0)
    fp32: list[TorchRunner] = []

    def fallback(x: torch.Tensor) -> torch.Tensor:
        if not fp32:
            fp32.append(TorchRunner(network, device, "fp32"))
        return fp32[0](x)

    return TensorRTRunner(engine_path, device, sha, settings.cuda_graph, fallback)
