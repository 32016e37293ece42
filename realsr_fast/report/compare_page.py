"""A comparison page for the user's own files: `realsr compare` and `realsr upscale --report`.

One self-contained HTML page (:mod:`realsr_fast.report.page`: inline CSS and script, images as
PNG data URIs, the before/after slider) per set of inputs. For each input:
- a table of sizes and times: the input, each result (its size, its scale from the input, the
  time when known, its file size);
- per result, a frame (the input, reduced by a whole number when wide, the compared region
  marked) beside a slider over that region of the result and of the input upscaled bicubically to
  the result's size, at a whole-number zoom without smoothing (other results of the same size are
  in the slider's menus too).

Images are `(H, W, C)` uint8 / uint16 arrays as `io.read_image` returns them; they are shown as
8-bit RGB (`batch.to_rgb8`: alpha dropped, grey replicated).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from realsr_fast.batch import to_rgb8
from realsr_fast.errors import RealSRError, UsageError
from realsr_fast.report.page import (
    Box,
    Figure,
    Layer,
    Section,
    compare,
    gallery,
    heading,
    paragraph,
    side_by_side,
    table,
    write_report,
)
from realsr_fast.report.pictures import busiest_window

#: Largest side, in screen pixels, of a slider and of a frame (both fit a 390 px phone).
DISPLAY_PX = 320
#: Side of the compared region in result pixels, at most (then magnified to about DISPLAY_PX).
CROP_PX = 80


@dataclass
class Result:
    """One upscaled version of an input: a label, its pixels, and how long it took (None: unknown)."""

    label: str
    image: np.ndarray
    seconds: float | None = None
    path: Path | None = None


@dataclass
class Comparison:
    """An input (label, pixels, path) and its results."""

    label: str
    image: np.ndarray
    results: Sequence[Result]
    path: Path | None = None


def check_page_path(path: str | os.PathLike) -> Path:
    """The page's path, or UsageError (exit 2) when it cannot be written: a folder, or a parent folder
    that is missing or read-only. Checked before any work."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"cannot write the page {path}: it is a folder; name an .html file")
    if not parent.is_dir():
        raise UsageError(f"cannot write the page {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write the page {path}: {parent if not os.access(parent, os.W_OK) else path} "
                         "is not writable")
    return path


def bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`(H, W, 3)` uint8 resized to `(height, width, 3)` with Pillow's bicubic."""
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def reduce(image: np.ndarray, limit: int = DISPLAY_PX) -> tuple[np.ndarray, int]:
    """`image` shrunk by the smallest whole number `k` that makes both sides <= `limit` (box filter),
    and `k`; `k` 1 leaves it as is."""
    k = max(1, -(-max(image.shape[:2]) // limit))
    if k == 1:
        return image, 1
    height, width = image.shape[0] // k, image.shape[1] // k
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BOX, (0, 0, width * k, height * k))), k


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


def _file_size(path: Path | None) -> str:
    if path is None or not path.is_file():
        return "-"
    size = path.stat().st_size
    return f"{size / 2 ** 20:.2f} MiB" if size >= 2 ** 20 else f"{size / 2 ** 10:.1f} KiB"


def _region(shape: tuple[int, ...], source: np.ndarray, source_box: Box) -> Box:
    """`source_box` (in `source` pixels) in the pixels of an image of `shape`, rounded to whole pixels."""
    fy, fx = shape[0] / source.shape[0], shape[1] / source.shape[1]
    y, x = int(round(source_box.y * fy)), int(round(source_box.x * fx))
    h, w = max(1, int(round(source_box.h * fy))), max(1, int(round(source_box.w * fx)))
    return Box(min(y, shape[0] - h), min(x, shape[1] - w), h, w)


def comparison_sections(comparison: Comparison, key: str) -> list[Section]:
    """The sizes-and-times table and the per-result sliders of one input, as page sections."""
    source = to_rgb8(comparison.image)
    results = [Result(r.label, to_rgb8(r.image), r.seconds, r.path) for r in comparison.results]
    rows = [("input", comparison.label, _size(source), "1", "-", _file_size(comparison.path))]
    for result in results:
        scale_y, scale_x = result.image.shape[0] / source.shape[0], result.image.shape[1] / source.shape[1]
        scale = f"{scale_x:.3g}" if abs(scale_x - scale_y) < 0.01 else f"{scale_x:.3g} x {scale_y:.3g}"
        time = "-" if result.seconds is None else f"{result.seconds:.2f} s"
        rows.append(("result", result.label, _size(result.image), scale, time, _file_size(result.path)))
    overview = Section(f"{key}-sizes", f"{comparison.label}: sizes and times", [
        table(("", "file", "size (px)", "scale", "time", "file size"), rows)])

    largest = max(results, key=lambda r: r.image.shape[0] * r.image.shape[1])
    side = min(CROP_PX, *largest.image.shape[:2])
    # The region: the busiest `side` result pixels of the largest result, found on the input.
    input_side = max(1, int(round(side * source.shape[1] / largest.image.shape[1])))
    input_side = min(input_side, *source.shape[:2])
    y, x = busiest_window(source, input_side, step=max(1, input_side // 4))
    region = Box(y, x, input_side, input_side)
    thumbnail, k = reduce(source)
    mark = Box(y // k, x // k, max(1, input_side // k), max(1, input_side // k))
    magnify = max(1, DISPLAY_PX // max(thumbnail.shape[:2]))  # small inputs: a whole-number zoom up to the slider's size
    shown = f"shown 1/{k}" if k > 1 else f"shown {magnify}x"
    frame = Figure(thumbnail, f"input {_size(source)}, {shown}; the compared region in yellow", magnify, magnify, [mark])

    body = [paragraph(
        "Each result beside the input upscaled bicubically to the result's size: drag across the slider (or use "
        "its control) to wipe between the two over the same pixels, pick any two versions of that size in the "
        "menus, or swap the sides. Crops are magnified by a whole number, without smoothing.")]
    groups: dict[tuple[int, int], list[Result]] = {}
    for result in results:
        groups.setdefault(result.image.shape[:2], []).append(result)
    for (height, width), members in groups.items():
        box = _region((height, width), source, region)
        zoom = max(1, DISPLAY_PX // max(box.h, box.w))
        crop = (slice(box.y, box.y + box.h), slice(box.x, box.x + box.w))
        layers = [Layer(f"bicubic {width}x{height}", bicubic(source, height, width)[crop], zoom)]
        layers += [Layer(result.label, result.image[crop], zoom) for result in members]
        names = ", ".join(result.label for result in members)
        body.append(heading(f"{names}: {width}x{height}"))
        slider = compare(layers, 0, 1, f"region ({box.y}, {box.x}), {box.w}x{box.h} px of {width}x{height}, "
                                       f"shown {zoom}x")
        body.append(side_by_side(gallery([frame]), slider))
    return [overview, Section(f"{key}-views", f"{comparison.label}: bicubic and the results", body)]


def write_comparison_page(path: str | os.PathLike, comparisons: Sequence[Comparison], title: str = "realsr comparison",
                          subtitle: str = "") -> Path:
    """Write the page for `comparisons` to `path` atomically; returns the path.

    Raises:
        UsageError: an unwritable `path`.
        ValueError: a comparison without results.
    """
    path = check_page_path(path)
    sections: list[Section] = []
    for index, comparison in enumerate(comparisons):
        if not comparison.results:
            raise ValueError(f"{comparison.label}: nothing to compare")
        sections += comparison_sections(comparison, f"input{index + 1}")
    try:
        write_report(path, title, sections, subtitle)
    except RealSRError as exc:  # the folder was checked; what is left is the path itself (e.g. a read-only file system)
        raise UsageError(f"cannot write the page: {exc}") from None
    return path
