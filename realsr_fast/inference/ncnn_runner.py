"""The ncnn backend: the `ncnn` package runs an ncnn .param/.bin model tile by tile, on the CPU
(fp32, Winograd 3x3 convolutions) or on any Vulkan GPU (AMD, Intel, Apple, NVIDIA).

`--device cpu` (or `auto` without a Vulkan GPU) runs on the CPU in fp32: ncnn's fp16/bf16
storage is switched off, so the output matches torch fp32 (the bound: tests/test_ncnn_runner.py).
`--device vulkan` / `vulkan:N` runs on Vulkan device N (default: the first GPU) with the
storage and arithmetic precision ncnn picks for that device (fp16 where supported); without any
Vulkan device it says so in one line and runs on the CPU. The tile size on Vulkan is planned
from the device's heap budget, as the torch backend plans it from free CUDA memory.

Only ncnn files run here (a named model, or a .param/.bin pair): a .pth or .safetensors model
runs on the torch or onnx backends.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from realsr_fast.device import native_stderr_silenced
from realsr_fast.errors import RealSRError
from realsr_fast.inference.backends import TileRunner, UpscalerSettings
from realsr_fast.models.ncnn_format import parse_param, rrdbnet_config_from_graph
from realsr_fast.optional import import_optional
from realsr_fast.tiling.tile_size import MEMORY_FRACTION, MIN_TILE, bytes_per_pixel

logger = logging.getLogger(__name__)

#: ncnn's GpuInfo.type() of a Vulkan device that is the CPU itself (Mesa's llvmpipe, SwiftShader).
_CPU_DEVICE_TYPE = 3


def import_ncnn():
    return import_optional("ncnn", "ncnn", "The ncnn backend")


def ncnn_files(model: str | os.PathLike) -> tuple[Path, Path]:
    """The (.param, .bin) pair of a named model or of a weights path; RealSRError if the model
    is not in ncnn form."""
    from realsr_fast.models import zoo
    from realsr_fast.models.formats import ncnn_pair

    if str(model) in zoo.MODELS:
        return zoo.ncnn_files(str(model))
    path = Path(model)
    if path.suffix.lower() not in (".param", ".bin"):
        raise RealSRError(f"the ncnn backend runs ncnn .param/.bin models; {path} is not one "
                          "(use --backend torch or onnx for .pth and .safetensors weights)")
    return ncnn_pair(path)


def vulkan_index(device: str) -> int | None:
    """The Vulkan device that `device` (auto, cpu, vulkan, vulkan:N) names, or None for the CPU.

    auto takes the first Vulkan GPU that is not itself the CPU; vulkan takes the first device of
    any kind; with no Vulkan device at all, vulkan falls back to the CPU with one warning line."""
    if device == "cpu":
        return None
    if device != "auto" and device != "vulkan" and not device.startswith("vulkan:"):
        raise RealSRError(f"the ncnn backend runs on cpu, vulkan or vulkan:N, not {device!r}")
    ncnn = import_ncnn()
    if device == "auto":  # only a question: ncnn's own listing of the devices it finds would be noise
        with native_stderr_silenced():
            count = ncnn.get_gpu_count()
        gpus = [i for i in range(count) if ncnn.get_gpu_info(i).type() != _CPU_DEVICE_TYPE]
        return gpus[0] if gpus else None
    count = ncnn.get_gpu_count()
    if count == 0:
        logger.warning("no Vulkan device found (install your GPU's Vulkan driver); ncnn runs "
                       "on the CPU")
        return None
    if device == "vulkan":
        return 0
    try:
        index = int(device.split(":", 1)[1])
    except ValueError as exc:
        raise RealSRError(f"unknown device {device!r}: use vulkan:N with N a number") from exc
    if not 0 <= index < count:
        raise RealSRError(f"device {device!r} does not exist: this machine has {count} Vulkan "
                          f"device(s): " + ", ".join(f"vulkan:{i} {ncnn.get_gpu_info(i).device_name()}"
                                                     for i in range(count)))
    return index


class NcnnRunner(TileRunner):
    """An ncnn network as a tile function: (B, 3, h, w) float -> (B, 3, s*h, s*w) float32 on
    the CPU, clamped to [0, 1]. Tiles are budgeted against CPU memory, or against the Vulkan
    device's heap when running there (`tile_for`)."""

    def __init__(self, param: Path, weights: Path, vulkan: int | None = None,
                 threads: int | None = None) -> None:
        ncnn = import_ncnn()
        config = rrdbnet_config_from_graph(parse_param(param), param)
        self.scale, self.nf = config["scale"], config["nf"]
        self.device = torch.device("cpu")
        self.vulkan = vulkan
        self.path = param
        self.net = ncnn.Net()
        self.net.opt.num_threads = threads or torch.get_num_threads()
        if vulkan is None:
            # fp32 storage and arithmetic: ncnn's CPU defaults (fp16/bf16 storage) fall well short of
            # the agreement with torch fp32 that tests/test_ncnn_runner.py asserts.
            self.precision = "fp32"
            for option in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic",
                           "use_bf16_storage"):
                setattr(self.net.opt, option, False)
        else:
            self.precision = "auto"  # ncnn's choice for the device: fp16 storage where supported
            self.itemsize = 2
            self.net.opt.use_vulkan_compute = True
            self.net.set_vulkan_device(vulkan)
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise RealSRError(f"ncnn could not load {param} / {weights}")
        self.input_name, self.output_name = self.net.input_names()[0], self.net.output_names()[0]
        self._weight_bytes = weights.stat().st_size

    @property
    def resident_bytes(self) -> int:
        return 0 if self.vulkan is not None else self._weight_bytes

    @property
    def device_name(self) -> str:
        if self.vulkan is None:
            return "cpu"
        return f"vulkan:{self.vulkan} ({import_ncnn().get_gpu_info(self.vulkan).device_name()})"

    def tile_for(self, tile: int | None, pad: int) -> int | None:
        """On Vulkan, an asked-for tile as is, else the largest square tile (with its pad) that
        fits a share of the device's heap budget; on the CPU, chosen per image (None)."""
        if tile is not None or self.vulkan is None:
            return tile
        budget = import_ncnn().get_gpu_device(self.vulkan).get_heap_budget() << 20  # MiB
        pixels = budget * MEMORY_FRACTION["cuda"] / bytes_per_pixel(self.nf, self.scale, self.itemsize)
        return max(int(math.sqrt(pixels)) - 2 * pad, MIN_TILE)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        ncnn = import_ncnn()
        tiles = x.detach().to("cpu", torch.float32).numpy()
        outputs = []
        for chw in tiles:
            chw = np.ascontiguousarray(chw)  # stays referenced while the Mat wraps it
            extractor = self.net.create_extractor()
            extractor.input(self.input_name, ncnn.Mat(chw))
            status, out = extractor.extract(self.output_name)
            if status != 0:
                raise RealSRError(f"ncnn failed on a {chw.shape[2]}x{chw.shape[1]} tile on "
                                  f"{self.device_name} (status {status}); try a smaller --tile")
            outputs.append(torch.from_numpy(np.array(out)))
        y = torch.stack(outputs)
        if not bool(torch.isfinite(y).all()):
            raise RealSRError(f"ncnn gave a non-finite tile on {self.device_name} (fp16 "
                              "overflow); use --device cpu for fp32")
        return y.clamp_(0, 1)


def load_runner(settings: UpscalerSettings, device: torch.device) -> NcnnRunner:
    """ncnn over the model's .param/.bin on `settings.device` (cpu, vulkan, vulkan:N or auto).

    precision: auto or fp32 on the CPU; on Vulkan, auto (ncnn's choice)."""
    if device.type == "cuda":
        raise RealSRError("the ncnn backend runs NVIDIA GPUs through Vulkan: use --device vulkan")
    param, weights = ncnn_files(settings.model)
    index = vulkan_index(settings.device)
    allowed = ("auto", "fp32") if index is None else ("auto",)
    if settings.precision not in allowed:
        where = "fp32 on the CPU" if index is None else "the precision ncnn picks on Vulkan"
        raise RealSRError(f"the ncnn backend runs {where}, not --precision {settings.precision} "
                          "(drop --precision, or use --backend torch for bf16/fp16)")
    return NcnnRunner(param, weights, index)
