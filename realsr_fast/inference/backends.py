"""The inference backends: one table (`BACKENDS`) saying, per backend, the runner module that loads
it, its own options, the devices it runs on and the optional extra it needs.

A runner runs the network on one tile; the `Upscaler` does everything around it (tiling, the tile
size, the out-of-memory retry, the numpy path). A new backend is one runner module with a
`load_runner(settings, device) -> TileRunner` function (reading its options from
`settings.options`), and one `Backend` entry in `BACKENDS`: `UpscalerSettings` checks the options
and devices against it, and `realsr upscale` offers its flags from it.

Light on purpose (no torch): the CLI reads `BACKENDS` for `--backend` and the backends' flags.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from realsr_fast.errors import RealSRError
from realsr_fast.models import DEFAULT_MODEL
from realsr_fast.tiling import DEFAULT_TILE_PAD

if TYPE_CHECKING:
    import torch

#: Device kinds that torch itself runs (`device.resolve_device`); a backend's other kinds (vulkan)
#: are driven by the backend, and its tiles come and go through CPU memory.
TORCH_DEVICE_KINDS = ("cpu", "cuda")


@dataclass(frozen=True)
class BackendOption:
    """One option of a backend: `name` in `UpscalerSettings.options` (and the `Upscaler` keyword),
    `flag` on the command line. `parse` turns the flag's text into the value (None: a switch,
    False unless given); `weights_built_in`: the option names a file (a graph, an engine) that
    has the model's weights built in, which `--strength` cannot blend."""

    name: str
    flag: str
    help: str
    parse: Callable[[str], object] | None = str
    default: object = None
    metavar: str | None = None
    weights_built_in: bool = False

    @property
    def initial(self) -> object:
        """The value when the option is not given."""
        return False if self.parse is None else self.default


@dataclass(frozen=True)
class Backend:
    """What a backend is: `runner` the module whose `load_runner(settings, device)` builds its
    `TileRunner` (imported when used); `summary` a few words for `--backend`'s help; `options`
    its own options; `devices` the device kinds it runs on (`kind` or `kind:N`; `auto` is always
    taken); `extra` the optional dependency group it needs (`pip install 'realsr_fast[extra]'`);
    `reads_only_ncnn`: it loads ncnn .param/.bin pairs only, so a `--strength` blend is exported
    to one for it."""

    runner: str
    summary: str
    options: tuple[BackendOption, ...] = ()
    devices: tuple[str, ...] = TORCH_DEVICE_KINDS
    extra: str | None = None
    reads_only_ncnn: bool = False

    def option(self, name: str) -> BackendOption | None:
        return next((option for option in self.options if option.name == name), None)


#: Backend name -> what it is; `--backend`'s choices, in this order.
BACKENDS: dict[str, Backend] = {
    "torch": Backend("realsr_fast.inference.torch_runner", "PyTorch, CPU or CUDA"),
    "onnx": Backend("realsr_fast.inference.onnx_runner", "ONNX Runtime", extra="onnx", options=(
        BackendOption("onnx", "--onnx", "a graph from `realsr export onnx` (default: the model's, exported "
                      "once to the cache)", metavar="PATH", weights_built_in=True),
    )),
    "tensorrt": Backend("realsr_fast.inference.tensorrt_runner", "NVIDIA GPU", devices=("cuda",),
                        extra="tensorrt", options=(
        BackendOption("engine", "--engine", "an engine from `realsr export tensorrt` (built there when "
                      "missing; default: the model's, in the cache)", metavar="PATH", weights_built_in=True),
        BackendOption("rebuild_engine", "--rebuild-engine", "rebuild the engine (e.g. one made for another "
                      "GPU or TensorRT version)", parse=None),
        BackendOption("cuda_graph", "--cuda-graph", "replay each tile shape as a CUDA graph", parse=None),
    )),
    "ncnn": Backend("realsr_fast.inference.ncnn_runner", "CPU or Vulkan GPU, ncnn models",
                    devices=("cpu", "vulkan"), extra="ncnn", reads_only_ncnn=True),
    # picks one of the above by the machine; it may pick ncnn, hence ncnn's devices and weights
    "auto": Backend("realsr_fast.inference.auto_choice", "the fastest for this machine, says which and why",
                    devices=(*TORCH_DEVICE_KINDS, "vulkan"), reads_only_ncnn=True),
}


#: The PSNR-oriented model that `--strength` below 1 blends with (ESRGAN's, fetched on first use).
DEFAULT_STRENGTH_BASE = "esrgan-psnr"


def device_kind(device: str) -> str:
    """`vulkan:1` -> `vulkan`; `cuda` -> `cuda`."""
    return device.partition(":")[0]


def device_kinds() -> tuple[str, ...]:
    """Every backend's device kinds (`Backend.devices`), each once, in `BACKENDS` order."""
    return tuple(dict.fromkeys(kind for backend in BACKENDS.values() for kind in backend.devices))


def runs_on(kind: str) -> list[str]:
    """The backends whose device kinds include `kind`, in `BACKENDS` order (auto last)."""
    return [name for name, backend in BACKENDS.items() if kind in backend.devices]


@dataclass(frozen=True)
class UpscalerSettings:
    """Everything that picks and configures an upscaler; checked when made, before any loading.

    `backend` names an entry of `BACKENDS` (auto picks one of the others for the machine,
    `inference.auto_choice`); `device` must be one of its device kinds (or auto); `options` are
    that backend's own (`Backend.options`, e.g. onnx's `onnx`, tensorrt's `engine`), and are
    filled with the defaults of those not given. Without a graph or engine file, the model's is
    built once and kept in the cache folder, named by the weights' hash.
    `strength` below 1 runs `model` interpolated with `strength_base` (a PSNR-oriented model of
    the same architecture): every weight (1 - strength) * base + strength * model
    (`models.interpolate`); every backend then loads that blend as a weights file
    (`with_strength_applied`).
    """

    model: str | os.PathLike = DEFAULT_MODEL
    device: str = "auto"
    precision: str = "auto"
    tile: int | None = None
    tile_pad: int = DEFAULT_TILE_PAD
    backend: str = "torch"
    strength: float = 1.0
    strength_base: str | os.PathLike = DEFAULT_STRENGTH_BASE
    options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.strength <= 1:  # also false for nan
            raise RealSRError(f"--strength must be from 0 to 1, got {self.strength}")
        if self.tile is not None and self.tile < 1:
            raise RealSRError(f"tile must be a positive number of pixels (or None), got {self.tile}")
        if self.tile_pad < 0:
            raise RealSRError(f"tile padding must be >= 0, got {self.tile_pad}")
        if self.backend not in BACKENDS:
            raise RealSRError(f"unknown backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        self._check_device()
        # Frozen: the checked options, with the backend's defaults, are set once here.
        object.__setattr__(self, "options", self._checked_options())
        built_in = [option.flag for option in BACKENDS[self.backend].options
                    if option.weights_built_in and self.options[option.name] is not None]
        if self.strength < 1 and built_in:
            raise RealSRError(f"--strength blends model weights, but a given {built_in[0]} has its weights built "
                              f"in; drop {built_in[0]} (the blend is exported once and cached)")

    def _check_device(self) -> None:
        kind = device_kind(self.device)
        owners = runs_on(kind)
        if self.device != "auto" and owners and kind not in BACKENDS[self.backend].devices:
            raise RealSRError(f"--device {self.device} runs on the {' / '.join(owners)} backend(s), not "
                              f"{self.backend}; add --backend {owners[0]}")

    def _checked_options(self) -> dict[str, object]:
        """`options` with the backend's defaults filled in; RealSRError naming the backend of a
        given option that is not this backend's."""
        declared = BACKENDS[self.backend].options
        for name in set(self.options) - {option.name for option in declared}:
            owner = next((backend for backend, entry in BACKENDS.items() if entry.option(name)), None)
            if owner is None:
                raise RealSRError(f"unknown backend option {name!r}; the options of --backend {self.backend} are: "
                                  + (", ".join(option.name for option in declared) or "none"))
            flags = [option.flag for option in BACKENDS[owner].options]
            raise RealSRError(f"{', '.join(flags)} {'is an option' if len(flags) == 1 else 'are options'} of "
                              f"--backend {owner}; add --backend {owner}")
        return {option.name: self.options.get(option.name, option.initial) for option in declared}

    @property
    def torch_device(self) -> str:
        """The device torch puts the tiles on: the CPU for a kind the backend drives itself (one of
        its `devices` that torch does not run: vulkan), else `device` (checked by torch)."""
        kind = device_kind(self.device)
        return "cpu" if kind in BACKENDS[self.backend].devices and kind not in TORCH_DEVICE_KINDS else self.device

    @property
    def weights_source(self) -> str | os.PathLike:
        """Where the weights come from: a given file with them built in (--onnx, --engine), else `model`."""
        built_in = [self.options[o.name] for o in BACKENDS[self.backend].options if o.weights_built_in]
        return next((value for value in built_in if value is not None), self.model)


class TileRunner:
    """What a backend provides: `runner(x)` maps a (B, 3, h, w) float tile (any device) to
    (B, 3, scale*h, scale*w) float32 in [0, 1]. `device` is where the tile's memory is budgeted
    (and out-of-memory retried); `itemsize` the bytes per activation; `nf` the model's width."""

    scale: int
    nf: int
    device: torch.device
    precision: str
    itemsize: int = 4
    #: Bytes per LR pixel of a tile that the runner uses beside the network's activations.
    workspace_bytes_per_pixel: int = 0

    def tile_for(self, tile: int | None, pad: int) -> int | None:
        """The tile side to use when `tile` is asked for (None: chosen per image from memory)."""
        return tile

    @property
    def resident_bytes(self) -> int:
        """Bytes the runner holds between calls (its weights) where tiles are budgeted."""
        return 0

    def release(self) -> None:
        """Free what the runner keeps for the next call when it is large (called after each image)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def load_runner(settings: UpscalerSettings, device: torch.device) -> TileRunner:
    """The runner of `settings.backend` on `device` (its module imported now).

    A weights file of another architecture than RRDBNet (`models.formats.NotRRDBNetError`) runs
    through spandrel on the torch backend when spandrel is installed (`inference.spandrel_runner`);
    without it, or on another backend, the error names what the file is."""
    from realsr_fast.models.formats import NotRRDBNetError

    settings = with_strength_applied(settings)
    try:
        return importlib.import_module(BACKENDS[settings.backend].runner).load_runner(settings, device)
    except NotRRDBNetError as refused:
        if settings.backend != "torch":  # auto reaches here through its torch choice
            raise
        from realsr_fast.inference import spandrel_runner

        return spandrel_runner.load_runner(settings, device, refused)


def with_strength_applied(settings: UpscalerSettings) -> UpscalerSettings:
    """`settings` whose model is the blend that `strength` asks for, and strength 1.

    Strength 1 changes nothing (the base is never fetched); 0 is the base model itself; between,
    the blended weights file (`models.interpolate.blended_model_file`, cached). For a backend that
    reads only ncnn pairs (`Backend.reads_only_ncnn`: ncnn, and auto, which may pick ncnn) that
    file is an ncnn pair with fp32 weights, exported once beside the blend: every other backend
    reads ncnn pairs too."""
    if settings.strength >= 1:
        return settings
    if settings.strength == 0:
        return replace(settings, model=settings.strength_base, strength=1.0)
    from realsr_fast.models.interpolate import blended_model_file

    model = blended_model_file(settings.model, settings.strength_base, settings.strength)
    if BACKENDS[settings.backend].reads_only_ncnn:
        model = _as_ncnn(model)
    return replace(settings, model=model, strength=1.0)


def _as_ncnn(weights: Path) -> Path:
    """The .param of `weights` exported as an ncnn pair beside it (once; fp32 weights)."""
    param = weights.with_suffix(".param")
    if not (param.is_file() and param.with_suffix(".bin").is_file()):  # the .bin is written first
        from realsr_fast.export.ncnn_export import export_ncnn
        from realsr_fast.models.loading import load_model

        export_ncnn(load_model(weights), param)
    return param


def cache_file(kind: str, name: str) -> Path:
    """Where a built graph or engine of `kind` (onnx, tensorrt) is kept between runs."""
    from realsr_fast.models.zoo import cache_dir

    return cache_dir() / kind / name
