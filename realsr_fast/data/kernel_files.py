"""Kernel files: `.mat` (key 'Kernel', what Real-SR's dataset scripts read), `.npy`, the PNG sheet.

Layout per image: `OUT/<stem>/<stem>_kernel_x2.mat` (+ `_kernel_x4.mat` at scale 4) and the
same names with `.npy`. Every file is written atomically (temporary file + rename).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, ImageDraw

from realsr_fast.errors import RealSRError
from realsr_fast.io import atomic_write

MAT_KEY = "Kernel"
SHEET_CELL = 136
"""Sheet cell side in pixels: the 17x17 x2 kernel magnified 8 times."""
SHEET_CAPTION = 28


def kernel_paths(out_dir: str | os.PathLike, stem: str, scale: int) -> dict[str, Path]:
    """Paths of one image's outputs: keys "mat2", "npy2" (and "mat4", "npy4" at scale 4)."""
    folder = Path(out_dir) / stem
    paths = {"mat2": folder / f"{stem}_kernel_x2.mat", "npy2": folder / f"{stem}_kernel_x2.npy"}
    if scale == 4:
        paths.update(mat4=folder / f"{stem}_kernel_x4.mat", npy4=folder / f"{stem}_kernel_x4.npy")
    return paths


def save_kernel(mat_path: Path, npy_path: Path, kernel: np.ndarray) -> None:
    """Write a `(k, k)` kernel as `.mat` (float64 under 'Kernel') and `.npy`, creating the folder."""
    mat_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(mat_path) as f:
        scipy.io.savemat(f, {MAT_KEY: np.asarray(kernel, dtype=np.float64)})
    with atomic_write(npy_path) as f:
        np.save(f, np.asarray(kernel, dtype=np.float64))


def load_kernel(path: str | os.PathLike) -> np.ndarray:
    """Read a kernel from `.mat` (key 'Kernel') or `.npy` as `(k, k)` float64; bad files raise RealSRError."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            kernel = np.load(path, allow_pickle=False)
        else:
            content = scipy.io.loadmat(path)
            if MAT_KEY not in content:
                raise RealSRError(f"{path}: no '{MAT_KEY}' entry (found {sorted(k for k in content if not k.startswith('__'))})")
            kernel = content[MAT_KEY]
    except RealSRError:
        raise
    except Exception as exc:
        raise RealSRError(f"{path}: cannot read a kernel from it ({exc})") from None
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or not np.isfinite(kernel).all():
        raise RealSRError(f"{path}: a kernel must be a finite square 2-D array, got shape {kernel.shape}")
    return kernel


def _kernel_tile(kernel: np.ndarray) -> Image.Image:
    """A kernel as a magnified grey tile, its maximum white."""
    peak = kernel.max()
    grey = np.clip(kernel / peak if peak > 0 else kernel, 0, 1)
    tile = Image.fromarray(np.round(grey * 255).astype(np.uint8), mode="L")
    return tile.resize((SHEET_CELL, SHEET_CELL), Image.NEAREST)


def write_sheet(path: Path, entries: list[tuple[str, np.ndarray, list[str]]], columns: int = 8) -> None:
    """One PNG showing every kernel: (name, x2 kernel, flags) per entry; flagged names in red."""
    if not entries:
        return
    rows = (len(entries) + columns - 1) // columns
    width, height = min(len(entries), columns) * SHEET_CELL, rows * (SHEET_CELL + SHEET_CAPTION)
    sheet = Image.new("RGB", (width, height), "black")
    draw = ImageDraw.Draw(sheet)
    for index, (name, kernel, flags) in enumerate(entries):
        x, y = (index % columns) * SHEET_CELL, (index // columns) * (SHEET_CELL + SHEET_CAPTION)
        sheet.paste(_kernel_tile(kernel).convert("RGB"), (x, y))
        colour = (255, 80, 80) if flags else (200, 200, 200)
        draw.text((x + 2, y + SHEET_CELL + 1), name[:22], fill=colour)
        draw.text((x + 2, y + SHEET_CELL + 14), ", ".join(flags)[:24] or "ok", fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        sheet.save(f, format="PNG")
