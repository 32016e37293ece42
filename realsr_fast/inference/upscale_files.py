"""Upscale image files in a batch: list the inputs, map them to outputs, run the model, report.

`realsr upscale` is a thin layer over `upscale_files`; `upscale_array` is the per-image step
(grey, alpha and 16-bit handling around `Upscaler.upscale_tensor`).

Rules:
- OUTPUT is a file when there is one input file and OUTPUT has an image suffix; otherwise a
  folder (created). Files from an input folder keep their sub-folder under OUTPUT.
- The output keeps the input's stem; its format is `fmt` if given, else JPEG stays JPEG, lossy
  WebP stays WebP and lossless inputs (PNG, TIFF, BMP, lossless WebP) become PNG.
- An output that already exists is skipped (outputs are written atomically, so an existing one
  is complete: re-running a stopped batch resumes it); `overwrite=True` redoes it.
- A plan that would write onto an input file, or two inputs onto one output, is refused before
  any work. A file that cannot be read or written is reported and the batch goes on.

Example:
    >>> report = upscale_files(["photos/"], "photos_x4/", device="cpu")
    >>> print(report.summary())
"""
from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from tqdm import tqdm

from realsr_fast.batch import BatchReport
from realsr_fast.tiling.tiler import DEFAULT_TILE_PAD
from realsr_fast.errors import RealSRError
from realsr_fast.io import (
    IMAGE_SUFFIXES,
    SIXTEEN_BIT_SUFFIXES,
    image_to_tensor,
    list_images,
    read_image,
    tensor_to_image,
    write_image,
)

if TYPE_CHECKING:
    from realsr_fast.inference.upscaler import Upscaler

# Inference backends by name: torch (`Upscaler`), onnx and tensorrt (`inference.backends`).
BACKENDS: tuple[str, ...] = ("torch", "onnx", "tensorrt")
# --format choices and the suffix each writes.
OUTPUT_FORMATS: dict[str, str] = {
    "png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif", "bmp": ".bmp",
}
_LOSSY_SUFFIXES = {".jpg", ".jpeg"}


@dataclass(frozen=True)
class Job:
    """One input file and the output file it becomes."""

    source: Path
    target: Path


@dataclass
class UpscaleReport(BatchReport):
    """What a batch did (`done`: outputs written), and how long it took."""

    verb: str = "upscaled"
    seconds: float = 0.0

    def summary(self) -> str:
        count = len(self.done)
        timing = f" in {self.seconds:.1f} s" + (f" ({self.seconds / count:.2f} s per image)" if count else "")
        return super().summary(timing)


def plan_jobs(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    recursive: bool = False,
    fmt: str | None = None,
) -> list[Job]:
    """Map input files and folders to output files; refuse plans that overwrite an input.

    Raises RealSRError for a missing input, no images at all, an unknown `fmt`, several inputs
    with a file OUTPUT, an output that is an input file, or two inputs with one output.
    """
    if not inputs:
        raise RealSRError("no input given; name image files or folders to upscale")
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        choices = ", ".join(OUTPUT_FORMATS)
        raise RealSRError(f"unknown output format {fmt!r}; choose one of {choices}")
    output = Path(output)
    sources = _sources_with_relative_names(inputs, recursive)
    if not sources:
        named = ", ".join(map(str, inputs))
        raise RealSRError(f"no images (png, jpg, webp, tif, bmp) found in {named}")
    single_file = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    output_is_file = output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir()
    if output_is_file and not single_file:
        raise RealSRError(
            f"several images need an output folder, but {output} looks like a file name"
        )
    if output_is_file:
        _check_format_matches(output, fmt)
        jobs = [Job(sources[0][0], output)]
    else:
        jobs = [
            Job(source, output / relative.parent / (relative.stem + _output_suffix(source, fmt)))
            for source, relative in sources
        ]
    _refuse_overwriting_inputs(jobs)
    _refuse_shared_outputs(jobs)
    return jobs


def _sources_with_relative_names(
    inputs: Sequence[str | os.PathLike], recursive: bool
) -> list[tuple[Path, Path]]:
    """(file, name under OUTPUT) for each image, each file once, in input order."""
    seen: set[Path] = set()
    sources = []
    for item in inputs:
        root = Path(item)
        for source in list_images([root], recursive):
            if source.resolve() in seen:
                continue
            seen.add(source.resolve())
            relative = source.relative_to(root) if root.is_dir() else Path(source.name)
            sources.append((source, relative))
    return sources


def _check_format_matches(output: Path, fmt: str | None) -> None:
    suffix = output.suffix.lower()
    suffix = {".jpeg": ".jpg", ".tiff": ".tif"}.get(suffix, suffix)
    if fmt is not None and OUTPUT_FORMATS[fmt] != suffix:
        raise RealSRError(
            f"--format {fmt} contradicts the output file name {output}; drop one of them"
        )


def _output_suffix(source: Path, fmt: str | None) -> str:
    if fmt is not None:
        return OUTPUT_FORMATS[fmt]
    if source.suffix.lower() in _LOSSY_SUFFIXES or _is_lossy_webp(source):
        return source.suffix
    return ".png"


def _is_lossy_webp(path: Path) -> bool:
    """True for a WebP whose image chunk is 'VP8 ' (lossy) rather than 'VP8L' (lossless)."""
    if path.suffix.lower() != ".webp":
        return False
    try:
        with open(path, "rb") as file:
            if file.read(12)[8:] != b"WEBP":
                return False
            while len(header := file.read(8)) == 8:
                fourcc, size = header[:4], int.from_bytes(header[4:], "little")
                if fourcc in (b"VP8 ", b"VP8L"):
                    return fourcc == b"VP8 "
                file.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to even sizes
    except OSError:
        pass  # reading the image reports the problem by name
    return False


def _refuse_overwriting_inputs(jobs: list[Job]) -> None:
    """Compare by inode, so symlinks, hard links and case-insensitive names are caught too."""
    input_ids = {_file_id(job.source): job.source for job in jobs}
    for job in jobs:
        if job.target.exists() and _file_id(job.target) in input_ids:
            raise RealSRError(
                f"{job.target} is an input file and would be overwritten by the upscaled "
                f"{job.source}; choose another output folder (-o) or --format"
            )


def _file_id(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


def _refuse_shared_outputs(jobs: list[Job]) -> None:
    owner: dict[Path, Path] = {}
    for job in jobs:
        key = Path(os.path.normcase(job.target.resolve()))
        if key in owner:
            raise RealSRError(
                f"{owner[key]} and {job.source} would both be written to {job.target}; "
                "upscale them into separate output folders"
            )
        owner[key] = job.source


def upscale_array(
    upscaler: Upscaler,
    image: np.ndarray,
    dtype: type[np.integer] | np.dtype | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Upscale an `(H, W, C)` uint8/uint16 image to `(s*H, s*W, C)` of `dtype` (default: same).

    Grey (C 1 or 2) runs the model on grey replicated to RGB and keeps the mean of the three
    output channels, so grey stays grey. Alpha (C 2 or 4) is upscaled bicubically, not by the
    model: the model is trained on noisy photos, and on a mask it turns opaque 255 into 251-253
    (the whole image becomes slightly see-through) and rings at edges; bicubic keeps flat alpha
    exact and costs nothing next to the model.
    """
    import torch  # here, so that `realsr --help` does not wait for torch

    x = image_to_tensor(image)  # (1, C, H, W)
    channels = x.shape[1]
    colour = x[:, :1].expand(-1, 3, -1, -1) if channels <= 2 else x[:, :3]
    y = upscaler.upscale_tensor(colour.contiguous(), progress)  # (1, 3, sH, sW)
    if channels <= 2:
        y = y.mean(dim=1, keepdim=True)
    if channels in (2, 4):
        alpha = torch.nn.functional.interpolate(
            x[:, -1:], size=y.shape[2:], mode="bicubic", align_corners=False
        )
        y = torch.cat([y, alpha], dim=1)
    return tensor_to_image(y, image.dtype if dtype is None else dtype)


def upscale_files(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    model: str | os.PathLike = "df2k",
    device: str = "auto",
    precision: str = "auto",
    tile: int | None = None,
    tile_pad: int = DEFAULT_TILE_PAD,
    backend: str = "torch",
    onnx: str | os.PathLike | None = None,
    engine: str | os.PathLike | None = None,
    rebuild_engine: bool = False,
    cuda_graph: bool = False,
    recursive: bool = False,
    fmt: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> UpscaleReport:
    """Upscale every image of `inputs` into `output` (see the module docstring for the rules).

    The model is loaded once, and only when some image needs it. `backend` onnx runs the graph
    `onnx` (default: the model's, exported once to the cache) with ONNX Runtime; tensorrt runs
    the engine `engine` (default: the model's, built once for this GPU; `rebuild_engine` rebuilds
    one made for another GPU or TensorRT version), optionally as CUDA graphs. With `progress`, tqdm bars
    (images, and tiles of a large image) and notes go to stderr. Bad files end up in
    `report.failed` with a message naming them; the other images are still done.
    """
    if backend not in BACKENDS:
        raise RealSRError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if onnx is not None and backend != "onnx":
        raise RealSRError("--onnx names a graph for --backend onnx; add --backend onnx")
    if (engine is not None or rebuild_engine or cuda_graph) and backend != "tensorrt":
        raise RealSRError("--engine, --rebuild-engine and --cuda-graph are options of "
                          "--backend tensorrt; add --backend tensorrt")
    start = time.perf_counter()
    report = UpscaleReport()
    jobs = []
    for job in plan_jobs(inputs, output, recursive, fmt):
        if job.target.exists() and not overwrite:
            report.skipped.append(job.target)
        else:
            jobs.append(job)
    if report.skipped and progress:
        tqdm.write(f"skipping {len(report.skipped)} image(s) whose output exists "
                   "(--overwrite redoes them)", file=sys.stderr)
    if jobs:
        load = functools.partial(_load_upscaler, model, device, precision, tile, tile_pad, progress,
                                 backend, onnx, engine, rebuild_engine, cuda_graph)
        _run_jobs(load, jobs, report, progress)
    report.seconds = time.perf_counter() - start
    return report


def _load_upscaler(model: str | os.PathLike, device: str, precision: str, tile: int | None,
                   tile_pad: int, progress: bool, backend: str = "torch",
                   onnx: str | os.PathLike | None = None, engine: str | os.PathLike | None = None,
                   rebuild_engine: bool = False, cuda_graph: bool = False) -> Upscaler:
    # heavy modules: imported only when needed
    if backend == "onnx":
        from realsr_fast.inference.backends import load_onnx_backend
        from realsr_fast.device import resolve_device

        upscaler = load_onnx_backend(model, resolve_device(device), precision, tile, tile_pad,
                                     onnx)
    elif backend == "tensorrt":
        from realsr_fast.inference.backends import load_tensorrt_backend
        from realsr_fast.device import resolve_device

        if precision not in ("auto", "fp16"):
            raise RealSRError("TensorRT engines run in fp16 (with fp32 where needed); drop "
                              "--precision or use --backend torch / onnx for fp32")
        upscaler = load_tensorrt_backend(model, resolve_device(device), tile, tile_pad, engine,
                                         rebuild_engine, cuda_graph)
    else:
        from realsr_fast.inference.upscaler import Upscaler

        upscaler = Upscaler(model, device=device, precision=precision, tile=tile,
                            tile_pad=tile_pad)
    if progress:
        tqdm.write(f"upscaling x{upscaler.scale} with {onnx or engine or model} on "
                   f"{upscaler.device} ({backend}, {upscaler.precision})", file=sys.stderr)
    return upscaler


def _run_jobs(load_upscaler: Callable[[], Upscaler], jobs: list[Job], report: UpscaleReport,
              progress: bool) -> None:
    """Run the jobs; the model is loaded at the first image that reads, and an error loading it
    (no file's fault) stops the batch, while an error reading or writing one file does not."""
    upscaler = None
    bar = tqdm(jobs, unit="image", disable=None if progress else True, file=sys.stderr,
               dynamic_ncols=True)
    for job in bar:
        bar.set_postfix_str(job.source.name)
        try:
            image = read_image(job.source)
        except RealSRError as exc:
            _record_failure(report, job, exc, progress)
            continue
        upscaler = upscaler or load_upscaler()
        dtype = image.dtype if job.target.suffix.lower() in SIXTEEN_BIT_SUFFIXES else np.uint8
        with _TileBar(enabled=progress) as tiles:
            try:
                write_image(job.target, upscale_array(upscaler, image, dtype, tiles))
            except RealSRError as exc:
                _record_failure(report, job, exc, progress)
            else:
                report.done.append(job.target)
    bar.close()


def _record_failure(report: UpscaleReport, job: Job, error: RealSRError, progress: bool) -> None:
    report.fail(job.source, error)
    if progress:
        tqdm.write(f"failed: {error}", file=sys.stderr)


class _TileBar:
    """A second progress bar, over the tiles of one image; shown only when there are several."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 1:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, unit="tile", leave=False, position=1, file=sys.stderr,
                            dynamic_ncols=True, disable=None)
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> "_TileBar":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.close()
