"""The torch backend: RRDBNet in eager PyTorch, one tile at a time.

Precision: fp32 on the CPU by default, its trunk's 3x3 convolutions as Winograd F(6x6, 3x3)
(`winograd_rrdbnet`; speed in docs/winograd.md); bf16 on the CPU on request, a Winograd F(4x4, 3x3)
trunk with its GEMMs in bf16 (faster where the CPU has AMX / AVX512-BF16, benchmarks/README.md);
fp16 by default on CUDA, where RRDBNet can overflow
(docs/METHOD.md, "fp16"): each tile's output is checked and a tile that is not finite is run
again in fp32.
"""
from __future__ import annotations

import copy
import logging
import threading

import torch

from realsr_fast.device import cpu_has_native_bf16
from realsr_fast.errors import RealSRError
from realsr_fast.inference.backends import TileRunner, UpscalerSettings
from realsr_fast.inference.winograd_rrdbnet import TILE_BY_GEMM_DTYPE, WinogradRRDBNet, supports_winograd
from realsr_fast.models.loading import load_model
from realsr_fast.models.rrdbnet import RRDBNet

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# Without native bf16, oneDNN converts to fp32 around each convolution, with scratch buffers per
# thread, so a bf16 tile's peak is several times fp32's: such a tile is planned as if each
# activation took 12 bytes, chosen from the peaks in benchmarks/README.md, "Measurements behind the
# defaults", "Tile memory".
EMULATED_BF16_ITEMSIZE = 12


def planning_itemsize(precision: str, device: torch.device) -> int:
    """Bytes per activation that the tile planner assumes for `precision` on `device`."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return EMULATED_BF16_ITEMSIZE
    return DTYPES[precision].itemsize


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> fp16 on CUDA, fp32 on the CPU; fp16 is refused on the CPU."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 will be slower "
                       "than fp32")
    if precision not in DTYPES:
        raise RealSRError(f"unknown precision {precision!r}: use auto, {', '.join(DTYPES)}")
    if precision == "fp16" and device.type == "cpu":
        raise RealSRError("fp16 runs on CUDA only; on the CPU use bf16 (fast) or fp32 (exact)")
    return precision


class TorchRunner(TileRunner):
    """`network` (fp32, CPU) run on `device` in `precision`, with the fp32 redo of overflowing
    tiles; (B, 3, h, w) float (any device) -> (B, 3, s*h, s*w) float32 in [0, 1] on `device`.

    Owns `network` (it is moved, not copied). In fp32 only the network that runs is kept (on the CPU
    the Winograd form, which drops the stock trunk); in bf16/fp16 the fp32 network is kept too, for
    the redo. Calls from several threads at once are safe.
    """

    def __init__(self, network: RRDBNet, device: torch.device, precision: str) -> None:
        self.device, self.precision = device, precision
        self.scale, self.nf = network.scale, network.nf
        self.itemsize = planning_itemsize(precision, device)
        self._loaded_bytes = sum(p.nbytes for p in network.parameters())
        if precision == "fp32":
            self._network, self._model = None, self._build(network, torch.float32)
            self._fp32_model: RRDBNet | WinogradRRDBNet | None = self._model
        else:
            self._network, self._model = network, self._build(copy.deepcopy(network), DTYPES[precision])
            self._fp32_model = None
        self.workspace_bytes_per_pixel = getattr(self._model, "workspace_bytes_per_pixel", 0)
        self._fp32_lock = threading.Lock()

    def _build(self, network: RRDBNet, dtype: torch.dtype) -> RRDBNet | WinogradRRDBNet:
        if dtype in TILE_BY_GEMM_DTYPE and self.device.type == "cpu" and supports_winograd(network):
            return WinogradRRDBNet(network, dtype)  # keeps its stock layers channels-last itself
        return network.to(self.device, dtype, memory_format=torch.channels_last)

    @property
    def resident_bytes(self) -> int:
        """Bytes of weights this runner holds on its device, plus, for the Winograd form, the loaded
        fp32 weights: the transform frees them, but the C allocator keeps their pages for reuse, so
        the process's resident memory still counts them."""
        held = {id(m): m for m in (self._network, self._model, self._fp32_model) if m is not None}
        weights = sum(m.resident_bytes if isinstance(m, WinogradRRDBNet)
                      else sum(p.nbytes for p in m.parameters()) for m in held.values())
        return weights + (self._loaded_bytes if isinstance(self._model, WinogradRRDBNet) else 0)

    def release(self) -> None:
        for model in (self._model, self._fp32_model):
            if isinstance(model, WinogradRRDBNet):
                model.release()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self._model(x.to(DTYPES[self.precision]))
            if self.precision != "fp32" and not bool(torch.isfinite(y).all()):
                y = self._fp32()(x)
            return y.float().clamp_(0, 1)

    def _fp32(self) -> RRDBNet | WinogradRRDBNet:
        """The fp32 model for tiles that overflow in reduced precision (built once, when needed)."""
        with self._fp32_lock:
            if self._fp32_model is None:
                logger.warning("a tile overflowed in %s; such tiles are redone in fp32 (slower)",
                               self.precision)
                self._fp32_model = self._build(copy.deepcopy(self._network), torch.float32)
        return self._fp32_model


def load_runner(settings: UpscalerSettings, device: torch.device) -> TorchRunner:
    precision = resolve_precision(settings.precision, device)  # refuse a bad one before loading
    network = load_model(settings.model)
    if network.in_nc != 3 or network.out_nc != 3:
        raise RealSRError(f"model {settings.model} maps {network.in_nc} channels to "
                          f"{network.out_nc}; an upscaler needs RGB -> RGB")
    return TorchRunner(network, device, precision)
