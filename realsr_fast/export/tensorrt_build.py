"""TensorRT engines: the optimisation profile, the JSON sidecar, and the build itself.

The engine is built from the fp16 ONNX graph (fp16 input/output, overflow-prone units in fp32,
see `realsr_fast.export.precision`) as a strongly typed network: TensorRT 11 has no weak typing
(BuilderFlag.FP16 is gone) and on 10.x the STRONGLY_TYPED creation flag asks for the same (11.x
accepts and ignores it). One optimisation profile covers square tiles from `min` to `max` LR
pixels a side (batch 1): `min` is small (8) so that no tile ever needs padding with made-up
pixels (see `inference/tensorrt_runner.py`), `opt` is the default tile with its context (512).

A timing cache file, when given, is read before and written after the build, so rebuilds (other
profiles, other models) skip most kernel timing. A cache TensorRT refuses (`set_timing_cache`
returns False: written by another GPU or TensorRT version, or damaged; IBuilderConfig in the
TensorRT Python API docs) is discarded with a warning and the build goes on with an empty one; the
engine is always returned, whatever happens to the cache afterwards.

An engine only runs on the GPU model and TensorRT version it was built with: the sidecar
`<engine>.json` records both (and the profile, the model's weight hash, scale and tile pad), and
`check_sidecar` refuses a mismatch with a message saying how to rebuild.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from realsr_fast.errors import RealSRError
from realsr_fast.export.onnx_export import INPUT_NAME, OnnxInfo
from realsr_fast.tiling import DEFAULT_TILE_PAD

logger = logging.getLogger(__name__)

#: Default profile (LR tile sides with padding: min, opt, max) and build workspace. opt is the
#: default tile with its context (`Profile.tile_for`: max - 2 * pad, padded again to max).
DEFAULT_PROFILE = (8, 512, 512)
WORKSPACE_BYTES = 4 << 30
INSTALL_HINT = ("TensorRT is not installed: pip install 'realsr_fast[tensorrt]' (TensorRT 11 for "
                "CUDA 13: pip install 'tensorrt-cu13==11.*', NVIDIA driver >= 580) on a machine "
                "with an NVIDIA GPU")


@dataclass(frozen=True)
class Profile:
    """Square (1, 3, side, side) input shapes an engine accepts: min <= side <= max, tuned at opt."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise RealSRError(f"a TensorRT profile needs 1 <= min <= opt <= max, got min "
                              f"{self.min}, opt {self.opt}, max {self.max}")

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes, (1, 3, side, side) each."""
        return tuple((1, 3, side, side) for side in (self.min, self.opt, self.max))

    def tile_for(self, pad: int, requested: int | None = None) -> int:
        """The tile side for the tiler: a padded tile (tile + 2 * pad) must fit under max; the
        default is the largest that does."""
        largest = self.max - 2 * pad
        if largest < 1:
            raise RealSRError(f"tile padding {pad} leaves no room in the engine's largest input "
                              f"({self.max} px); use a smaller --tile-pad or rebuild with a "
                              "larger --max")
        if requested is None:
            return largest
        if requested > largest:
            raise RealSRError(f"--tile {requested} with --tile-pad {pad} needs "
                              f"{requested + 2 * pad} px inputs, but the engine takes at most "
                              f"{self.max}; use --tile {largest} or less, or rebuild the engine "
                              f"with --max {requested + 2 * pad}")
        return requested


@dataclass(frozen=True)
class Target:
    """What an engine is tied to: the TensorRT version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor"

    @classmethod
    def current(cls, device_index: int = 0) -> "Target":
        """This machine's TensorRT and GPU (needs both)."""
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise RealSRError("TensorRT needs an NVIDIA GPU, and CUDA is not available here")
        major, minor = torch.cuda.get_device_capability(device_index)
        return cls(trt.__version__, torch.cuda.get_device_name(device_index), f"{major}.{minor}")


@dataclass(frozen=True)
class Sidecar:
    """The JSON file next to an engine: its target, profile and model."""

    target: Target
    profile: Profile
    model_sha256: str
    scale: int
    tile_pad: int
    fp32_units: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"tensorrt_version": self.target.tensorrt_version,
                "gpu_name": self.target.gpu_name,
                "compute_capability": self.target.compute_capability,
                "profile": asdict(self.profile), "model_sha256": self.model_sha256,
                "scale": self.scale, "tile_pad": self.tile_pad,
                "fp32_units": list(self.fp32_units)}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str | os.PathLike) -> "Sidecar":
        try:
            return cls(Target(str(data["tensorrt_version"]), str(data["gpu_name"]),
                              str(data["compute_capability"])),
                       Profile(**{k: int(data["profile"][k]) for k in ("min", "opt", "max")}),
                       str(data["model_sha256"]), int(data["scale"]), int(data["tile_pad"]),
                       tuple(map(str, data["fp32_units"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise RealSRError(f"{source} is not a valid engine sidecar ({exc!r} missing or "
                              "wrong); rebuild the engine with `realsr export tensorrt`") from exc


def sidecar_path(engine: str | os.PathLike) -> Path:
    """`model.engine` -> `model.engine.json`."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def write_sidecar(engine: str | os.PathLike, sidecar: Sidecar) -> None:
    from realsr_fast.io import atomic_write

    with atomic_write(sidecar_path(engine), "w") as f:
        json.dump(sidecar.to_json(), f, indent=2)


def read_sidecar(engine: str | os.PathLike) -> Sidecar:
    path = sidecar_path(engine)
    if not path.is_file():
        raise RealSRError(f"{path} is missing: an engine needs the sidecar written when it was "
                          "built; rebuild it with `realsr export tensorrt`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RealSRError(f"cannot read the engine sidecar {path} ({exc}); rebuild the engine "
                          "with `realsr export tensorrt`") from exc
    if not isinstance(data, dict):
        raise RealSRError(f"{path} is not a valid engine sidecar; rebuild the engine")
    return Sidecar.from_json(data, path)


def check_sidecar(sidecar: Sidecar, target: Target, engine: str | os.PathLike,
                  model_sha256: str | None = None) -> None:
    """Refuse an engine built for another GPU or TensorRT version (or, when given, other weights)."""
    built = sidecar.target
    problems = []
    if built.tensorrt_version != target.tensorrt_version:
        problems.append(f"TensorRT {built.tensorrt_version} (this machine has "
                        f"{target.tensorrt_version})")
    if (built.gpu_name, built.compute_capability) != (target.gpu_name, target.compute_capability):
        problems.append(f"GPU {built.gpu_name} (sm {built.compute_capability}; this machine has "
                        f"{target.gpu_name}, sm {target.compute_capability})")
    if model_sha256 is not None and sidecar.model_sha256 != model_sha256:
        problems.append(f"weights {sidecar.model_sha256[:12]} (the model asked for is "
                        f"{model_sha256[:12]})")
    if problems:
        raise RealSRError(f"the engine {engine} was built for {' and '.join(problems)}; rebuild "
                          "it here with --rebuild-engine (realsr upscale) or `realsr export "
                          f"tensorrt -o {engine}`")


def import_tensorrt():
    """The `tensorrt` module, or RealSRError saying how to install it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise RealSRError(INSTALL_HINT) from exc
    return tensorrt


def build_engine(onnx_path: str | os.PathLike, profile: Profile,
                 timing_cache: str | os.PathLike | None = None,
                 workspace_bytes: int = WORKSPACE_BYTES) -> bytes:
    """Build a serialized engine from an ONNX graph whose types are explicit (strongly typed)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RealSRError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(INPUT_NAME, *profile.shapes())
    config.add_optimization_profile(optimisation)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    attach_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RealSRError(f"TensorRT could not build an engine from {onnx_path} for inputs "
                          f"{profile.min}-{profile.max} px (see the TensorRT log above); try a "
                          "smaller --max")
    if cache_path is not None:
        save_timing_cache(config, cache_path)
    return bytes(memoryview(serialized))


def attach_timing_cache(config, path: Path | None) -> None:
    """Give the builder `config` the timing cache in `path` (none yet: an empty one). TensorRT
    refuses a cache from another GPU or version (set_timing_cache returns False, with
    ignore_mismatch False: a mismatched cache could pick slow kernels); such a cache, or an
    unreadable file, is replaced by an empty cache with a warning."""
    cached = b""
    if path is not None and path.is_file():
        try:
            cached = path.read_bytes()
        except OSError as exc:
            logger.warning("cannot read the timing cache %s (%s); timing from scratch", path, exc)
    if cached:
        try:
            cache = config.create_timing_cache(cached)
        except RuntimeError:  # a damaged file may be refused here already
            cache = None
        if cache is not None and config.set_timing_cache(cache, False):
            return
        logger.warning("TensorRT refused the timing cache %s (another GPU or TensorRT version, "
                       "or damaged); timing from scratch and replacing it", path)
    if not config.set_timing_cache(config.create_timing_cache(b""), False):
        raise RealSRError("TensorRT refused an empty timing cache (see the TensorRT log above)")


def save_timing_cache(config, path: Path) -> None:
    """Write the builder's timing cache to `path` atomically; a cache that cannot be had or
    written costs the next build time, never this build's engine (a warning, no error)."""
    from realsr_fast.io import atomic_write

    cache = config.get_timing_cache()
    data = cache.serialize() if cache is not None else None
    if data is None:
        logger.warning("TensorRT returned no timing cache; %s is not updated", path)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            f.write(memoryview(data))
    except OSError as exc:
        logger.warning("cannot write the timing cache %s (%s); the engine is fine", path, exc)


def export_tensorrt(model: torch.nn.Module, engine_path: str | os.PathLike, profile: Profile,
                    timing_cache: str | os.PathLike | None = None, tile_pad: int = DEFAULT_TILE_PAD,
                    device_index: int = 0) -> Sidecar:
    """Export the fp32 RRDBNet `model` to an fp16 (fp16 I/O) ONNX graph, build the engine for GPU
    `device_index`, and write it and its sidecar (atomically)."""
    import tempfile

    from realsr_fast.export.onnx_export import export_onnx
    from realsr_fast.io import atomic_write

    target = Target.current(device_index)
    engine_path = Path(engine_path)
    with tempfile.TemporaryDirectory(prefix="realsr_trt_") as folder, torch.cuda.device(device_index):
        info: OnnxInfo = export_onnx(model, Path(folder) / "model_fp16.onnx", precision="fp16",
                                     io_dtype="fp16", tile_pad=tile_pad)
        engine = build_engine(Path(folder) / "model_fp16.onnx", profile, timing_cache)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(engine_path) as f:
        f.write(engine)
    sidecar = Sidecar(target, profile, info.model_sha256, info.scale, tile_pad, info.fp32_units)
    write_sidecar(engine_path, sidecar)
    return sidecar
