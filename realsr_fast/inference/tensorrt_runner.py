"""TensorRT backend: runs an engine from `realsr export tensorrt` tile by tile on the GPU.

Tiles stay on the GPU: each is copied into a fresh engine-typed (fp16) buffer (256-byte aligned,
as TensorRT requires of I/O addresses), bound with `set_tensor_address` and run with
`execute_async_v3` on a dedicated stream of the runner, ordered after and before torch's current
stream with events (TensorRT adds its own synchronisation and warns on the legacy default stream;
"Streaming" and "CUDA graphs" in the TensorRT developer guide, docs.nvidia.com/deeplearning/tensorrt;
the reasons in full: docs/TENSORRT.md).
Everything runs with the runner's GPU current (`device.cuda_index`), so cuda:1 and torchrun ranks
>= 1 never touch device 0.

No tile is ever padded with made-up pixels (repeated edges change RRDBNet's output deep inside a
small tile, measured in tests/test_tensorrt.py): the profile's minimum is small (8 px), and a
tile under it (only images under 8 px, or a --tile with no context) is run by `fallback`, the
torch fp32 runner, which also redoes tiles that are not finite (fp16 overflow, docs/METHOD.md §10).

`cuda_graph=True` captures each tile shape once and replays it. TensorRT fixes the input shapes,
addresses and execution context in a captured graph, so each shape gets its own execution
context; all contexts share one block of device memory (they run one after another on the one
stream). At most `GRAPH_CACHE` shapes are kept (least recently used dropped, with their buffers);
a shape whose capture fails runs without a graph from then on.
"""
from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from realsr_fast.device import cuda_index
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

#: TensorRT's alignment requirement for I/O tensor addresses (IExecutionContext.set_tensor_address).
IO_ALIGNMENT = 256
#: Captured tile shapes kept at once (a tile grid has at most 4 shapes per image size).
GRAPH_CACHE = 8


def aligned_copy(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A fresh contiguous `dtype` copy of x whose address TensorRT accepts (the caching allocator
    starts every block at a multiple of 512 bytes; a view such as a batch item may not)."""
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    out.copy_(x)
    if out.data_ptr() % IO_ALIGNMENT:
        raise RuntimeError(f"tile buffer at {out.data_ptr():#x} is not {IO_ALIGNMENT}-byte aligned")
    return out


def run_tiles(x: torch.Tensor, engine: TileFn, fallback: TileFn | None,
              profile: Profile) -> torch.Tensor:
    """x (B, 3, h, w) -> (B, 3, s*h, s*w) float32 in [0, 1]: each item through `engine` (one
    (1, 3, h, w) tile at a time, as the profile has batch 1), exactly as it is. A tile under the
    profile's minimum side, or an item whose engine output is not finite, goes to `fallback`."""
    height, width = x.shape[2:]
    if max(height, width) > profile.max:
        raise RealSRError(f"a {height}x{width} tile exceeds the engine's profile (max "
                          f"{profile.max} px); use a smaller --tile")
    if min(height, width) < profile.min:
        if fallback is None:
            raise RealSRError(f"a {height}x{width} tile is under the engine's minimum side "
                              f"({profile.min} px); use a larger --tile")
        return fallback(x).to(x.device).float().clamp_(0, 1)
    outputs = []
    for item in x.split(1):
        y = engine(item).float()
        if not bool(torch.isfinite(y).all()):
            if fallback is None:
                raise RealSRError("the TensorRT engine overflowed in fp16 on a tile")
            y = fallback(item).to(x.device).float()
        outputs.append(y)
    return torch.cat(outputs).clamp_(0, 1)


@dataclass
class _Captured:
    """One tile shape's execution context, CUDA graph and the static buffers it reads and writes."""

    context: object
    graph: torch.cuda.CUDAGraph | None
    static_in: torch.Tensor
    static_out: torch.Tensor


class TensorRTRunner(TileRunner):
    """A deserialized engine as a tile function: (B, 3, h, w) float (any device) -> (B, 3, s*h,
    s*w) float32 on the GPU, clamped to [0, 1]; h, w <= the profile's max."""

    sidecar: Sidecar
    scale: int

    def __init__(self, engine_path: str | os.PathLike, device: torch.device,
                 model_sha256: str | None = None, cuda_graph: bool = False,
                 fallback: TileFn | None = None) -> None:
        trt = import_tensorrt()
        self._trt = trt
        self.device = torch.device("cuda", cuda_index(device))
        self.sidecar = read_sidecar(engine_path)
        check_sidecar(self.sidecar, Target.current(self.device.index), engine_path, model_sha256)
        self.scale, self.precision = self.sidecar.scale, "fp16"
        self.cuda_graph, self.fallback = cuda_graph, fallback
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self._engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
            if self._engine is None:
                raise RealSRError(f"TensorRT could not load {engine_path} (truncated or from "
                                  "another TensorRT?); rebuild it with `realsr export tensorrt` "
                                  "or --rebuild-engine")
            # One block of activation memory (the largest any profile shape needs) for every
            # context: contexts run one at a time on self._stream.
            self._memory = torch.empty(self._engine.device_memory_size_v2, dtype=torch.uint8,
                                       device=self.device)
            self._context = self._new_context()
            self._stream = torch.cuda.Stream(self.device)
        dtypes = {trt.DataType.HALF: torch.float16, trt.DataType.FLOAT: torch.float32}
        self.input_dtype = dtypes[self._engine.get_tensor_dtype(INPUT_NAME)]
        self.output_dtype = dtypes[self._engine.get_tensor_dtype(OUTPUT_NAME)]
        self._graphs: OrderedDict[tuple[int, ...], _Captured] = OrderedDict()

    def _new_context(self):
        """An execution context on the shared device memory (USER_MANAGED allocation)."""
        strategy = self._trt.ExecutionContextAllocationStrategy.USER_MANAGED
        if hasattr(self._engine, "create_runtime_config"):  # TensorRT >= 10.11: IRuntimeConfig
            config = self._engine.create_runtime_config()
            config.set_execution_context_allocation_strategy(strategy)
            context = self._engine.create_execution_context(config)
        else:
            context = self._engine.create_execution_context(strategy)
        if context is None:
            raise RealSRError("TensorRT could not create an execution context (out of GPU memory?"
                              " see the TensorRT log above)")
        context.set_device_memory(self._memory.data_ptr(), self._memory.numel())
        return context

    def _enqueue(self, context, x: torch.Tensor, y: torch.Tensor) -> None:
        """Queue the engine on self._stream: x (1, 3, h, w) -> y (1, 3, s*h, s*w), engine-typed."""
        if not context.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise RuntimeError(f"TensorRT refused the input shape {tuple(x.shape)}")
        context.set_tensor_address(INPUT_NAME, x.data_ptr())
        context.set_tensor_address(OUTPUT_NAME, y.data_ptr())
        if not context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run a {tuple(x.shape)} tile (see its log)")

    def _output_for(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], 3, self.scale * x.shape[2], self.scale * x.shape[3])
        return torch.empty(shape, dtype=self.output_dtype, device=self.device)

    def _captured(self, x: torch.Tensor) -> _Captured:
        """The capture for x's shape: made at its first use (its own context, enqueued once
        outside the graph so TensorRT does its lazy setup, then captured on self._stream)."""
        key = tuple(x.shape)
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        while len(self._graphs) >= GRAPH_CACHE:
            self._graphs.popitem(last=False)
        entry = _Captured(self._new_context(), None, aligned_copy(x, self.input_dtype),
                          self._output_for(x))
        self._stream.wait_stream(torch.cuda.current_stream(self.device))  # the copy into static_in
        with torch.cuda.stream(self._stream):
            self._enqueue(entry.context, entry.static_in, entry.static_out)
            self._stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, stream=self._stream):
                    self._enqueue(entry.context, entry.static_in, entry.static_out)
                entry.graph = graph
            except RuntimeError as exc:
                logger.warning("cannot capture a CUDA graph for %s tiles (%s); running them "
                               "without one", key, exc)
        self._graphs[key] = entry
        return entry

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) float CUDA tensor -> (1, 3, s*h, s*w) engine-typed, written on
        self._stream, which torch's current stream waits for before returning."""
        caller = torch.cuda.current_stream(self.device)
        if self.cuda_graph:
            entry = self._captured(x)
            entry.static_in.copy_(x)
            self._stream.wait_stream(caller)
            with torch.cuda.stream(self._stream):
                if entry.graph is not None:
                    entry.graph.replay()
                else:
                    self._enqueue(entry.context, entry.static_in, entry.static_out)
            caller.wait_stream(self._stream)
            return entry.static_out.clone()
        x = aligned_copy(x, self.input_dtype)  # on the caller's stream, which self._stream waits for
        y = self._output_for(x)
        self._stream.wait_stream(caller)
        self._enqueue(self._context, x, y)
        caller.wait_stream(self._stream)
        return y  # x and y were allocated on `caller`, which now waits for the engine: safe to free

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.cuda.device(self.device):
            return run_tiles(x.to(self.device), self._run, self.fallback, self.sidecar.profile)

    def tile_for(self, tile: int | None, pad: int) -> int:
        """The engine's profile bounds the tile: the largest that fits, or `tile` if it fits (so
        the automatic, memory-based size, which would need `nf`, is never used here)."""
        return self.sidecar.profile.tile_for(pad, tile)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def load_runner(settings: UpscalerSettings, device: torch.device) -> TensorRTRunner:
    """TensorRT over the option `engine` (built there when missing or with `rebuild_engine`), or
    over the model's engine for this GPU in the cache. Tiles that overflow in fp16, or are under
    the engine's minimum side, are run in fp32 by the torch runner."""
    from realsr_fast.inference.torch_runner import TorchRunner
    from realsr_fast.models.loading import load_model, weights_sha256

    if settings.precision not in ("auto", "fp16"):
        raise RealSRError("TensorRT engines run in fp16 (with fp32 where needed); drop "
                          "--precision or use --backend torch / onnx for fp32")
    if device.type != "cuda":
        raise RealSRError("the tensorrt backend runs on an NVIDIA GPU; use --device cuda (or "
                          "auto), or --backend onnx / torch on the CPU")
    device = torch.device("cuda", cuda_index(device))
    target = Target.current(device.index)
    network = load_model(settings.model)
    sha = weights_sha256(network.state_dict())
    options = settings.options
    engine_path = Path(options["engine"]) if options["engine"] is not None else cache_file(
        "tensorrt", f"{sha[:16]}-{_slug(target.gpu_name)}-trt{target.tensorrt_version}.engine")
    if options["rebuild_engine"] or not engine_path.is_file() or not sidecar_path(engine_path).is_file():
        profile = Profile(*DEFAULT_PROFILE)
        logger.warning("building the TensorRT engine %s (inputs %d-%d px; takes minutes)",
                       engine_path, profile.min, profile.max)
        export_tensorrt(network, engine_path, profile, engine_path.with_suffix(".timing"),
                        settings.tile_pad, device.index)
    fp32: list[TorchRunner] = []

    def fallback(x: torch.Tensor) -> torch.Tensor:
        if not fp32:
            fp32.append(TorchRunner(network, device, "fp32"))
        return fp32[0](x)

    return TensorRTRunner(engine_path, device, sha, options["cuda_graph"], fallback)
