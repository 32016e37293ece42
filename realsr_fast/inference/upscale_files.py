"""Upscale image files in a batch: list the inputs, map them to outputs, run the model, report.

`realsr upscale` is a thin layer over `upscale_files`; each image goes through
`Upscaler.upscale_image` (grey, alpha and 16-bit handling).

Rules:
- OUTPUT is a file when there is one input file and OUTPUT has an image suffix; otherwise a
  folder (created). Files from an input folder keep their sub-folder under OUTPUT.
- The output keeps the input's stem; its format is `fmt` if given, else JPEG stays JPEG, lossy
  WebP stays WebP, HEIC/HEIF/AVIF become JPEG and lossless inputs (PNG, TIFF, BMP, lossless
  WebP) become PNG.
- `ImageOptions.size` (an `OutputSize`: --outscale, --width, --height) sets each output's size;
  default the model's x4. The input's EXIF (orientation 1), ICC profile, XMP and DPI (scaled by
  the factor) are kept unless `strip_metadata`; `quality` is that of JPEG and WebP outputs.
- An output that already exists is skipped (outputs are written atomically, so an existing one
  is complete: re-running a stopped batch resumes it); `overwrite=True` redoes it.
- A plan that would write onto an input file, or two inputs onto one output, is refused before
  any work. A file that cannot be read or written is reported and the batch goes on.

Example:
    >>> report = upscale_files(["photos/"], "photos_x4/", UpscalerSettings(device="cpu"))
    >>> print(report.summary())
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from tqdm import tqdm

from realsr_fast.batch import BatchReport
from realsr_fast.errors import RealSRError
from realsr_fast.image_formats import OUTPUT_FORMATS
from realsr_fast.inference.backends import UpscalerSettings
from realsr_fast.inference.output_size import OutputSize
from realsr_fast.io import (
    HEIF_SUFFIXES,
    IMAGE_SUFFIXES,
    SIXTEEN_BIT_SUFFIXES,
    list_images,
    read_image,
    read_metadata,
    write_image,
)

if TYPE_CHECKING:
    from realsr_fast.inference.upscaler import Upscaler

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
    if source.suffix.lower() in HEIF_SUFFIXES:
        return ".jpg"
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


@dataclass(frozen=True)
class ImageOptions:
    """What a batch of images does besides the upscaler (the rules: the module docstring).

    recursive: also images in sub-folders; fmt: the output format (None: from the input);
    overwrite: redo outputs that exist; size: each output's size (default the model's scale);
    quality: that of JPEG and WebP outputs (1-100; None: `DEFAULT_QUALITY`); strip_metadata:
    write no EXIF, ICC profile, XMP or DPI.
    """

    recursive: bool = False
    fmt: str | None = None
    overwrite: bool = False
    size: OutputSize = OutputSize()
    quality: int | None = None
    strip_metadata: bool = False

    def __post_init__(self) -> None:
        if self.quality is not None and not (int(self.quality) == self.quality and 1 <= self.quality <= 100):
            raise RealSRError(f"--quality must be a whole number from 1 to 100, got {self.quality}")


def upscale_files(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    settings: UpscalerSettings = UpscalerSettings(),
    options: ImageOptions = ImageOptions(),
    *,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> UpscaleReport:
    """Upscale every image of `inputs` into `output` (see the module docstring for the rules).

    `settings` picks the model, device, backend and the rest of the `Upscaler` (checked when
    made, before any work); the model is loaded once, and only when some image needs it. With
    `progress`, tqdm bars (images, and tiles of a large image) and notes go to stderr. Bad files
    end up in `report.failed` with a message naming them; the other images are still done.
    `shard` (rank, world): this process's share of the plan (torchrun, inference/ranks.py).
    """
    start = time.perf_counter()
    report = UpscaleReport()
    jobs = []
    for job in plan_jobs(inputs, output, options.recursive, options.fmt)[shard[0]::shard[1]]:
        if job.target.exists() and not options.overwrite:
            report.skipped.append(job.target)
        else:
            jobs.append(job)
    if report.skipped and progress:
        tqdm.write(f"skipping {len(report.skipped)} image(s) whose output exists "
                   "(--overwrite redoes them)", file=sys.stderr)
    if jobs:
        _run_jobs(lambda: _load_upscaler(settings, progress), jobs, report, progress, options)
    report.seconds = time.perf_counter() - start
    return report


def _load_upscaler(settings: UpscalerSettings, progress: bool) -> Upscaler:
    from realsr_fast.inference.upscaler import Upscaler  # heavy: imported only when needed

    upscaler = Upscaler.from_settings(settings)
    if progress:
        model = settings.weights_source
        if settings.strength < 1:
            model = f"{model} at strength {settings.strength:g} over {settings.strength_base}"
        tqdm.write(f"upscaling x{upscaler.scale} with {model} on "
                   f"{upscaler.device} ({settings.backend}, {upscaler.precision})", file=sys.stderr)
    return upscaler


def _upscale_one(upscaler: Upscaler, job: Job, image: np.ndarray, options: ImageOptions, tiles: Callable) -> None:
    """Upscale `image` (read from job.source) to its size and write it with the source's metadata."""
    dtype = image.dtype if job.target.suffix.lower() in SIXTEEN_BIT_SUFFIXES else np.uint8
    if options.size.is_model_scale:
        out = upscaler.upscale_image(image, dtype, tiles)
    else:
        size = options.size.pixels(image.shape[0], image.shape[1], upscaler.scale)
        out = upscaler.upscale_image(image, dtype, tiles, size=size)
    metadata = None
    if not options.strip_metadata:
        metadata = read_metadata(job.source).resized(image.shape[:2], out.shape[:2])
    write_image(job.target, out, metadata, options.quality)


def _run_jobs(load_upscaler: Callable[[], Upscaler], jobs: list[Job], report: UpscaleReport,
              progress: bool, options: ImageOptions) -> None:
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
        with _TileBar(enabled=progress) as tiles:
            try:
                _upscale_one(upscaler, job, image, options, tiles)
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
