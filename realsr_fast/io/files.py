"""Image files as files: the suffixes read and written, listing the images of folders, and atomic
writes (a temporary file renamed at the end, so an interrupted write leaves no partial file)."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Iterator, Sequence

from realsr_fast.errors import RealSRError

# HEIC/HEIF (and AVIF where Pillow lacks it) are read through the optional pillow-heif package.
HEIF_SUFFIXES: frozenset[str] = frozenset({".heic", ".heif", ".avif"})

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
) | HEIF_SUFFIXES

# Suffixes whose formats store 16 bits per channel (others get 8-bit images).
SIXTEEN_BIT_SUFFIXES: frozenset[str] = frozenset({".png", ".tif", ".tiff"})


def list_images(inputs: Sequence[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    A file given by name is kept whatever its suffix (reading it reports a non-image by name).
    A folder contributes its files with an image suffix (png, jpg, jpeg, webp, tif, tiff, bmp,
    any case), skipping hidden names such as `.DS_Store` or `._photo.jpg`; with `recursive`
    its sub-folders too. A path that does not exist raises RealSRError.
    """
    found: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.update(_images_in_folder(path, recursive))
        elif path.exists():
            found.add(path)
        else:
            raise RealSRError(f"{path}: no such file or folder")
    return sorted(found)


def _images_in_folder(folder: Path, recursive: bool) -> Iterator[Path]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    for path in candidates:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            yield path


def write_json(path: str | os.PathLike, content: object) -> None:
    """Write `content` as indented JSON (and a final newline), atomically; folders are created."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as file:
        json.dump(content, file, indent=2)
        file.write("\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path beside `path` that replaces `path` when the block succeeds.

    For writers that want a file name (safetensors, onnx.save); on any error, Ctrl-C included,
    the temporary file is removed and `path` is left as it was. OSError passes through.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object whose content replaces `path` only when the block succeeds.

    The data goes to a hidden temporary file in the same folder (so the final `os.replace` is an
    atomic rename on one file system); on any error, Ctrl-C included, the temporary file is
    removed and `path` is left as it was. Text modes use UTF-8.

    Example:
        >>> with atomic_write("report.json", "w") as f:
        ...     json.dump(results, f)
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write writes a new file; mode must contain 'w', got {mode!r}")
    # os.open with 0o666 lets the umask decide the permissions, as for a plain open().
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        with atomic_path(path) as temporary:
            descriptor = os.open(temporary, flags, 0o666)
            with os.fdopen(descriptor, mode, encoding=None if "b" in mode else "utf-8") as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
    except OSError as exc:  # unwritable folder, a folder in the way, disk full...
        raise RealSRError(f"cannot write {path}: {exc.strerror or exc}") from None
