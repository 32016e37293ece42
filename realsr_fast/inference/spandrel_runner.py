"""Weights of other architectures than RRDBNet (Real-ESRGAN's SRVGGNetCompact and pixel-unshuffle
x2plus, SwinIR, HAT, SPAN, ...) on the torch backend, through spandrel (`pip install spandrel`).

`models.load_model` reads RRDBNets only and names anything else it recognises
(`models.formats.NotRRDBNetError`); `inference.backends.load_runner` then hands such a file to this
runner when the backend is torch (or auto, which picks torch for it) and spandrel is installed.
Everything around the tiles stays the Upscaler's: the tile grid and its pad, the automatic tile
size, the out-of-memory retry. spandrel pads each tile to the sizes the architecture needs (window
multiples) and crops the padding off again. None of our fast paths apply (no Winograd trunk, no
ncnn): the stock PyTorch forward of the architecture.
"""
from __future__ import annotations

import logging

import torch

from realsr_fast.errors import RealSRError
from realsr_fast.inference.backends import TileRunner, UpscalerSettings
from realsr_fast.models.formats import NotRRDBNetError
from realsr_fast.optional import import_optional

logger = logging.getLogger(__name__)

#: Feature width assumed when planning tiles (spandrel does not report one): RRDBNet's and most
#: of these architectures' 64.
PLANNING_NF = 64


def import_spandrel():
    return import_optional("spandrel", "spandrel", "Running weights of other architectures than RRDBNet")


class SpandrelRunner(TileRunner):
    """A spandrel `ImageModelDescriptor` as a tile function: (B, 3, h, w) float (any device) ->
    (B, 3, scale*h, scale*w) float32 in [0, 1] on `device`, in `precision` where the
    architecture supports it (else fp32, with one warning)."""

    def __init__(self, descriptor, device: torch.device, precision: str) -> None:
        if descriptor.input_channels != 3 or descriptor.output_channels != 3:
            raise RealSRError(f"this {descriptor.architecture.name} maps {descriptor.input_channels} channels to "
                              f"{descriptor.output_channels}; an upscaler needs RGB -> RGB")
        supported = {"fp32": True, "fp16": descriptor.supports_half, "bf16": descriptor.supports_bfloat16}
        if not supported.get(precision, False):
            logger.warning("%s does not run in %s; running fp32", descriptor.architecture.name, precision)
            precision = "fp32"
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.scale, self.nf, self.device, self.precision = descriptor.scale, PLANNING_NF, device, precision
        self.itemsize = self.dtype.itemsize
        self.architecture = descriptor.architecture.name
        self._descriptor = descriptor.to(device).to(self.dtype).eval()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            y = self._descriptor(x.to(self.device, self.dtype))
            if self.dtype != torch.float32 and not bool(torch.isfinite(y).all()):
                raise RealSRError(f"{self.architecture} overflowed in {self.precision}; use --precision fp32")
            return y.float().clamp_(0, 1)


def load_runner(settings: UpscalerSettings, device: torch.device, refused: NotRRDBNetError) -> SpandrelRunner:
    """The runner for the file that `load_model` refused with `refused`, on `device`.

    Raises:
        RealSRError: spandrel is missing (naming what the file is), or cannot read the file either.
    """
    from realsr_fast.inference.torch_runner import resolve_precision

    try:
        spandrel = import_spandrel()
    except RealSRError:
        raise refused from None
    precision = resolve_precision(settings.precision, device)
    try:
        descriptor = spandrel.ModelLoader().load_from_file(str(refused.path))
    except Exception as exc:  # spandrel raises many types for files it does not know
        raise RealSRError(f"{refused.path}: {refused.architecture or 'not an RRDBNet'}, and spandrel cannot "
                          f"load it either ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise RealSRError(f"{refused.path} is a {descriptor.architecture.name} {descriptor.purpose} model, not an "
                          "image upscaler")
    logger.warning("%s is a %s (not an RRDBNet): running it through spandrel on torch (x%d, %s)", refused.path,
                   descriptor.architecture.name, descriptor.scale, precision)
    return SpandrelRunner(descriptor, device, precision)
