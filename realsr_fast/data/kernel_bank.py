"""The kernel bank: blur kernels from a folder, stacked into one `(N, k, k)` float32 tensor.

Folders in two layouts are read, both made of files named `<stem>_kernel_x<scale>.mat` (key
'Kernel') or `.npy`:
- `realsr kernels` and the original KernelGAN: one sub-folder per photo, `KDIR/<stem>/<stem>_kernel_x4.mat`
  (realsr_fast also writes the `.npy` beside it; one of the two is read);
- flat: `KDIR/<stem>_kernel_x4.npy`.

Smaller kernels are zero-padded around the centre index (k // 2, the degrade op's) to the largest
size in the bank. An odd kernel larger than KernelGAN's size for the scale (17x17 for x2, 33x33 for
x4: 8 * scale + 1) is cropped to that size around its centre, with a warning that says how much of
its mass fell outside: upstream KernelGAN writes such x4 kernels when its raw kernel is off-centre
(its x4 kernel is the x2 one convolved with itself, sized from the shift), and one of them must not
make a whole folder unusable. Each kernel is normalised to sum 1.

Example:
    >>> bank = load_kernel_bank("kernels/", scale=4)
    >>> bank.kernels.shape, bank.files[0]
    (torch.Size([120, 33, 33]), PosixPath('kernels/0001/0001_kernel_x4.npy'))
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from realsr_fast.data.kernel_files import load_kernel
from realsr_fast.errors import RealSRError

KERNEL_SUFFIXES = (".npy", ".mat")  # preference order when a kernel is stored in both
_ANY_SCALE = re.compile(r"_kernel_x(\d+)$")


@dataclass
class KernelBank:
    """`kernels`: `(N, k, k)` float32, each summing to 1; `files[i]` is where kernel i came from."""

    kernels: torch.Tensor
    files: list[Path]


def kernel_size_for_scale(scale: int) -> int:
    """KernelGAN's kernel side for a scale: 17 for x2, 33 for x4 (8 * scale + 1)."""
    return 8 * scale + 1


def find_kernel_files(folder: str | os.PathLike, scale: int) -> list[Path]:
    """The `*_kernel_x<scale>` files of `folder` (flat or one sub-folder deep), one per kernel, sorted.

    Raises:
        RealSRError: when the folder is missing or holds no kernel for `scale` (the message says
            which scales it does hold, if any).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RealSRError(f"{folder}: no such kernel folder; make one with `realsr kernels PHOTOS -o {folder}`")
    by_kernel: dict[Path, Path] = {}
    other_scales: set[int] = set()
    for path in sorted(_candidate_files(folder)):
        match = _ANY_SCALE.search(path.stem)
        if match is None:
            continue
        if int(match.group(1)) != scale:
            other_scales.add(int(match.group(1)))
            continue
        key = path.with_suffix("")
        if key not in by_kernel or KERNEL_SUFFIXES.index(path.suffix) < KERNEL_SUFFIXES.index(by_kernel[key].suffix):
            by_kernel[key] = path
    if not by_kernel:
        found = ", ".join(f"x{s}" for s in sorted(other_scales))
        held = f" (it holds {found} kernels only; use the matching --scale or estimate x{scale} kernels)" if found else ""
        raise RealSRError(
            f"{folder}: no x{scale} kernels (*/*_kernel_x{scale}.mat or .npy){held}; "
            f"make them with `realsr kernels PHOTOS -o {folder} --scale {scale}`"
        )
    return sorted(by_kernel.values())


def _candidate_files(folder: Path):
    for pattern in ("*", "*/*"):
        for path in folder.glob(pattern):
            if path.suffix in KERNEL_SUFFIXES and not any(part.startswith(".") for part in path.relative_to(folder).parts):
                yield path


def stack_kernels(kernels: list[np.ndarray], scale: int, names: list[str] | None = None) -> torch.Tensor:
    """Validate, normalise, centre-pad (or centre-crop) and stack `(k_i, k_i)` kernels into `(N, k, k)` float32.

    `k` is the largest `k_i`, at most `8 * scale + 1`; a kernel moves by `k // 2 - k_i // 2` so its
    centre index stays the centre index. An odd kernel larger than `8 * scale + 1` is cropped to it
    around its centre (a warning names it and the mass cropped away). `names` label the kernels
    in messages.

    Raises:
        RealSRError: for an even kernel larger than `8 * scale + 1`, a kernel not square, not
            finite, or whose sum is not positive.
    """
    if not kernels:
        raise RealSRError("no kernels to stack")
    names = names or [f"kernel {i}" for i in range(len(kernels))]
    largest = kernel_size_for_scale(scale)
    kernels = list(kernels)
    for i, (kernel, name) in enumerate(zip(kernels, names)):
        if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or not np.isfinite(kernel).all():
            raise RealSRError(f"{name}: a kernel must be a finite square 2-D array, got shape {kernel.shape}")
        if kernel.shape[0] > largest:
            kernels[i] = _cropped(kernel, largest, scale, name)
        if not kernels[i].sum() > 1e-6:
            raise RealSRError(f"{name}: the kernel sums to {kernels[i].sum():.3g}; a blur kernel must sum to 1")
    size = max(kernel.shape[0] for kernel in kernels)
    bank = np.zeros((len(kernels), size, size), dtype=np.float64)
    for i, kernel in enumerate(kernels):
        start = size // 2 - kernel.shape[0] // 2
        bank[i, start:start + kernel.shape[0], start:start + kernel.shape[0]] = kernel / kernel.sum()
    return torch.from_numpy(bank).float()


def _cropped(kernel: np.ndarray, size: int, scale: int, name: str) -> np.ndarray:
    """The centre `size x size` of an odd kernel larger than `size`, with a warning (module docstring)."""
    if kernel.shape[0] % 2 == 0:
        raise RealSRError(
            f"{name}: a {kernel.shape[0]}x{kernel.shape[1]} kernel is too large for x{scale} "
            f"(expected at most {size}x{size}, KernelGAN's x{scale} size, or an odd size to crop); "
            "was it made for another scale?"
        )
    start = kernel.shape[0] // 2 - size // 2
    kept = kernel[start:start + size, start:start + size]
    total = float(kernel.sum())
    lost = 1 - float(kept.sum()) / total if total else 0.0
    warnings.warn(f"{name}: {kernel.shape[0]}x{kernel.shape[1]} kernel cropped to {size}x{size} around its centre "
                  f"({lost:.2%} of its mass outside), then renormalised", stacklevel=3)
    return kept


def load_kernel_bank(folder: str | os.PathLike, scale: int) -> KernelBank:
    """Find, read and stack the x`scale` kernels of `folder` (see the module docstring)."""
    files = find_kernel_files(folder, scale)
    kernels = [load_kernel(path) for path in files]
    return KernelBank(stack_kernels(kernels, scale, [str(path) for path in files]), files)
