"""`AdaptSettings`: what `realsr adapt` (`adaptation.job.adapt`) is asked to do, apart from the job.

Light on purpose: `realsr adapt --help` reads the defaults from here without importing torch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from realsr_fast.kernel_estimation import ITERATIONS


@dataclass(frozen=True)
class AdaptKernels:
    """Where the training photos' x4 kernels come from: `folder`, an existing kernel folder used as
    it is, or (None) estimated by `method`: `families` (Gaussian, disk and motion blurs fitted to
    each photo's spectrum, JPEG-aware), `kernelgan` (the paper's) or `spectral`. KernelGAN's own:
    `iterations` per photo (the official setting), `seeds` runs per photo (with 2 or more an
    estimate whose runs disagree is not trained on; the constant fallback kernel replaces it). Kernels
    already estimated in OUT are reused whatever made them."""

    folder: str | os.PathLike | None = None
    method: str = "families"
    iterations: int = ITERATIONS
    seeds: int = 1


@dataclass(frozen=True)
class AdaptNoise:
    """Where the training photos' noise comes from: `folder`, an existing noise folder used as it
    is, or (None) found in the photos (`data.noise_source`), mining flat patches of side `patch`
    (None: the largest of 256/128/64/32 that finds enough)."""

    folder: str | os.PathLike | None = None
    patch: int | None = None


@dataclass(frozen=True)
class AdaptTraining:
    """The fine-tune: `mode` `psnr` (L1 alone) or `gan` (L1 + VGG + RaGAN, the paper's weights),
    from its packaged preset or the `config` file; budgets of wall-clock `minutes` (training plus
    validation, summed over resumed runs) and `iterations` (None: the preset's); dotted `key=value`
    `overrides` on top of everything (`--set`)."""

    mode: str = "psnr"
    minutes: float | None = None
    iterations: int | None = None
    config: str | os.PathLike | None = None
    overrides: Sequence[str] = ()


@dataclass(frozen=True)
class AdaptSettings:
    """Everything `adapt(photos, out, settings)` is asked to do: the kernel, noise and training
    stages; the roles (`held_out`: the fraction of photos kept for validation, and as many for test,
    at least one each with 3 or more photos); the starting model `base` (`auto`: the better of df2k
    and realesrgan-x4plus on the validation photos when the latter is installed, else df2k; `df2k`,
    `realesrgan-x4plus` or a file); `clean` (False when the photos are clean HR images already: no
    1/2 clean-up); the `device` (`auto`, `cpu` or `cuda`), the `seed` of the roles, the estimates and
    training, and whether to show `progress`."""

    kernels: AdaptKernels = AdaptKernels()
    noise: AdaptNoise = AdaptNoise()
    training: AdaptTraining = AdaptTraining()
    held_out: float = 0.2
    base: str = "auto"
    clean: bool = True
    device: str = "auto"
    seed: int = 0
    progress: bool = True
