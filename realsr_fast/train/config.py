"""Training configuration: YAML presets plus dotted `key=value` overrides, checked before use.

A preset (`configs/realsr_dped.yaml`, ...) holds any subset of the sections below; what it leaves
out keeps the default (the paper's settings, docs/METHOD.md §7). Overrides use dotted names and YAML
values: `optim.iterations=1000`, `data.hr=photos/`, `generator.init=null`, `optim.milestones=[10,20]`.
Unknown keys and values of the wrong type raise RealSRError naming the key (and the closest known one).

Data comes one of two ways (exactly one must be set):
- `data.hr` (+ `data.kernels`, `data.noise`): HR images; the LR is made on the training device by
  the Degrader of `data.recipe`;
- `data.paired`: an offline dataset written by `realsr dataset` (`HR/`, `LR/` with the same stems,
  LR = HR / scale, `noise/`); aligned crops of both, and when `data.recipe` ends in `+noise` the
  real noise of its `noise/` folder is added to the LR on the device (docs/METHOD.md §5).
  `val.hr` then names an offline dataset too (the same or a held-out one), its LR used as it is.

Special values (for tests and trying things out without data):
- `data.hr` / `val.hr`: `builtin:samples` is the package's three 128x128 sample photos;
- `data.kernels`: `builtin:synthetic` is a seeded bank of the x`scale` MATLAB bicubic kernel plus
  7 random anisotropic Gaussians (DIV2KRK style, `realsr_fast.kernel_estimation.gaussians`);
- `data.noise`: `builtin:synthetic` is a seeded bank of 16 Gaussian noise patches (sigma 1..8 of 255).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from realsr_fast.data.recipes import KERNEL_DRAWS, RECIPES
from realsr_fast.errors import RealSRError
from realsr_fast.models.discriminators import DISCRIMINATORS

BUILTIN_SAMPLES = "builtin:samples"
BUILTIN_SYNTHETIC = "builtin:synthetic"
LOSS_MODES = ("gan", "psnr")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class GeneratorConfig:
    """RRDBNet's shape and where its weights start: `esrgan-psnr` (ESRGAN's PSNR x4 weights, fetched
    on first use: RealSR's start), `df2k` (the released RealSR model, to adapt it), a weights file,
    or null (ESRGAN's random initialisation)."""

    nf: int = 64
    nb: int = 23
    gc: int = 32
    scale: int = 4
    init: Optional[str] = "esrgan-psnr"


@dataclass
class DiscriminatorConfig:
    """`patchgan` (NLayerDiscriminator, the paper's) or `vgg128` (ESRGAN's, the DF2K config's)."""

    arch: str = "patchgan"
    ndf: int = 64
    n_layers: int = 3


@dataclass
class LossConfig:
    """`gan`: pixel + perceptual + RaGAN; `psnr`: pixel L1 alone (pre-training, no D, no VGG)."""

    mode: str = "gan"
    pixel_weight: float = 0.01
    perceptual_weight: float = 1.0
    gan_weight: float = 0.005
    vgg_weights: Optional[str] = None
    vgg_random_init_test_only: bool = False


@dataclass
class OptimConfig:
    """Adam for G and D, MultiStepLR stepped every iteration."""

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    milestones: list[int] = field(default_factory=lambda: [5000, 10000, 20000, 30000])
    gamma: float = 0.5
    iterations: int = 60000


@dataclass
class DataConfig:
    """HR images (cropped as uint8), the kernel and noise banks of the on-device Degrader; or
    `paired`, an offline dataset folder (HR/, LR/, noise/) instead of the three (module docstring).

    `batch` is the global batch: each of W processes takes batch / W. `kernel_draw`: `per_image`
    fixes one kernel per HR image (RealSR's offline LR), `per_sample` draws one per crop
    (`realsr_fast.data.training_pairs`). `hr_as_given`: a second folder of HR images used as they
    are beside `hr` (Track 1: the 800 clean DF2K targets, which the official does not clean up).
    `jpeg_quality`: the photos' JPEG quality (`data.jpeg.jpeg_quality_of_folder`), which the
    `kernel+noise+jpeg` recipe compresses each LR around.
    """

    hr: Optional[str] = None
    hr_as_given: Optional[str] = None
    paired: Optional[str] = None
    kernels: Optional[str] = None
    noise: Optional[str] = None
    recipe: str = "kernel+noise"
    jpeg_quality: Optional[float] = None
    kernel_draw: str = "per_image"
    patch: int = 128
    batch: int = 16
    workers: int = 4
    cache: bool = True


@dataclass
class ValConfig:
    """Held-out HR images, degraded once with a fixed seed; PSNR/SSIM (Y, border = scale) every `every`."""

    hr: Optional[str] = None
    every: int = 5000
    max_images: int = 10
    crop: Optional[int] = 256


@dataclass
class RunConfig:
    """Where outputs go and how the steps run."""

    out: str = "runs/realsr"
    seed: int = 10
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = True
    compile: bool = False
    checkpoint_every: int = 5000
    keep_checkpoints: int = 2
    log_every: int = 100
    progress: bool = True
    tensorboard: bool = True


@dataclass
class TrainConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    val: ValConfig = field(default_factory=ValConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The presets shipped in the package (`configs/` in a source checkout links here).
PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"


def resolve_preset(path: str | os.PathLike) -> Path:
    """`path` if it is a file, else the packaged preset it names: `smoke`, `smoke.yaml` or
    `configs/smoke.yaml` work from any folder, with or without a source checkout."""
    path = Path(path)
    if path.is_file():
        return path
    packaged = PRESET_DIR / (path.name if path.suffix else f"{path.name}.yaml")
    if path.parent in (Path("."), Path("configs")) and packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
    raise RealSRError(f"config file {path} does not exist; the packaged presets are {names} (e.g. `realsr train smoke`)")


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML preset (a file, or a packaged preset's name; None: all defaults), apply
    `key=value` overrides, check everything."""
    return with_overrides(read_config(path), overrides)


def read_config(path: str | os.PathLike | None) -> TrainConfig:
    """A YAML preset (a file, or a packaged preset's name; None: all defaults) as a config, its keys
    and types checked but not its values: a preset may leave the data folders to the caller, who
    finishes it with :func:`with_overrides`."""
    data: dict[str, Any] = {}
    if path is not None:
        path = resolve_preset(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise RealSRError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise RealSRError(f"{path} must hold a mapping of sections (generator, data, ...)")
    return build(TrainConfig, data, "")


def with_overrides(config: TrainConfig, overrides: Sequence[str] = ()) -> TrainConfig:
    """`config` with the `key=value` overrides applied (last wins), everything checked."""
    data = config.to_dict()
    for override in overrides:
        apply_override(data, override)
    config = build(TrainConfig, data, "")
    validate(config)
    return config


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set `a.b=value` in the nested dict `data` (the value parsed as YAML)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise RealSRError(f"override {override!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RealSRError(f"override {override!r}: the value is not valid YAML ({exc})") from exc
    *sections, name = key.strip().split(".")
    node = data
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise RealSRError(f"override {override!r}: {section} is not a section")
    node[name] = value


def build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass `cls` from a mapping, refusing unknown keys and wrong types."""
    where = prefix.rstrip(".") or "the config"
    if not isinstance(data, dict):
        raise RealSRError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise RealSRError(f"unknown config key {prefix}{key}{hint} (known in {where}: {', '.join(known)})")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = build(kind, value, f"{prefix}{key}.")
        else:
            values[key] = _coerce(value, kind, f"{prefix}{key}")
    return cls(**values)


def _coerce(value: Any, kind: Any, name: str) -> Any:
    """`value` as type `kind` (int, float, bool, str, Optional[...], list[...]), or RealSRError."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), name)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise RealSRError(f"{name} must be a list, got {value!r}")
        return [_coerce(item, args[0], f"{name}[{i}]") for i, item in enumerate(value)]
    if kind is float and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads `1e-4` (no dot) as a string
        except (TypeError, ValueError):
            pass
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind in (bool, str) and isinstance(value, kind):
        return value
    raise RealSRError(f"{name} must be {_type_name(kind)}, got {value!r}")


def _type_name(kind: Any) -> str:
    return {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}.get(kind, str(kind))


def validate(config: TrainConfig) -> None:
    """Check ranges and choices; RealSRError names the key and what it accepts."""
    checks = [
        (config.loss.mode in LOSS_MODES, "loss.mode", f"one of {', '.join(LOSS_MODES)}"),
        (config.discriminator.arch in DISCRIMINATORS, "discriminator.arch", f"one of {', '.join(DISCRIMINATORS)}"),
        (config.data.recipe in RECIPES, "data.recipe", f"one of {', '.join(RECIPES)}"),
        (config.data.kernel_draw in KERNEL_DRAWS, "data.kernel_draw", f"one of {', '.join(KERNEL_DRAWS)}"),
        (config.run.precision in PRECISIONS, "run.precision", f"one of {', '.join(PRECISIONS)}"),
        (config.generator.scale in (1, 2, 4, 8), "generator.scale", "1, 2, 4 or 8"),
        (len(config.optim.betas) == 2 and all(0 <= b < 1 for b in config.optim.betas), "optim.betas", "two numbers in [0, 1)"),
        (config.optim.milestones == sorted(config.optim.milestones), "optim.milestones", "increasing iterations"),
        (config.data.patch % config.generator.scale == 0, "data.patch", f"a multiple of generator.scale ({config.generator.scale})"),
        (config.data.workers >= 0, "data.workers", "0 or more"),
        (config.val.every >= 0, "val.every", "0 (never) or more"),
    ]
    positive = {"generator.nf": config.generator.nf, "generator.nb": config.generator.nb, "generator.gc": config.generator.gc,
                "discriminator.ndf": config.discriminator.ndf, "discriminator.n_layers": config.discriminator.n_layers,
                "optim.lr_g": config.optim.lr_g, "optim.lr_d": config.optim.lr_d, "optim.gamma": config.optim.gamma,
                "optim.iterations": config.optim.iterations, "data.patch": config.data.patch, "data.batch": config.data.batch,
                "val.max_images": config.val.max_images, "run.checkpoint_every": config.run.checkpoint_every,
                "run.keep_checkpoints": config.run.keep_checkpoints, "run.log_every": config.run.log_every}
    checks += [(value > 0, name, "more than 0") for name, value in positive.items()]
    checks += [(value >= 0, f"loss.{name}", "0 or more") for name, value in
               (("pixel_weight", config.loss.pixel_weight), ("perceptual_weight", config.loss.perceptual_weight),
                ("gan_weight", config.loss.gan_weight))]
    for ok, name, wanted in checks:
        if not ok:
            raise RealSRError(f"{name} must be {wanted}")
    data = config.data
    if data.paired is not None:
        clashing = [f"data.{name}" for name in ("hr", "hr_as_given", "kernels", "noise") if getattr(data, name) is not None]
        if clashing:
            raise RealSRError(f"data.paired and {', '.join(clashing)} are both set: an offline dataset brings its own "
                              f"LR and noise; set {', '.join(f'{name}=null' for name in clashing)} or data.paired=null")
    elif data.hr_as_given is not None and data.hr is None:
        raise RealSRError("data.hr_as_given adds HR images to data.hr, which is not set")
    elif data.hr is None:
        raise RealSRError("data.hr is not set: point it at a folder of HR images (data.hr=PATH), "
                          f"or use {BUILTIN_SAMPLES} to try things out, or set data.paired=PATH to an offline "
                          "dataset from `realsr dataset`")


def to_yaml(config: TrainConfig) -> str:
    """The full config as YAML (every key, defaults included), as the run folder keeps it."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
