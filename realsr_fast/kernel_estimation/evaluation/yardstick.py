"""An honest yardstick for kernel estimates: photos blurred with known kernels, scored against truth.

A case is a clean photo (taken as HR), a DIV2KRK-style kernel (`gaussians.anisotropic_gaussian`)
and the LR it makes (blur, keep every 2nd pixel, 8-bit). Any kernel is scored two ways:

- kernel-space error: L1 distance to the true kernel, both on the 17x17 grid KernelGAN saves
  (0 = equal, 2 = disjoint);
- re-synthesis PSNR: the LR the kernel makes from the same HR against the true LR, in dB.

Beside the estimate, three references frame the numbers: the bicubic kernel (what a method that
estimates nothing assumes), the best single constant kernel (the isotropic Gaussian whose width,
chosen with the truth, scores best on the whole set: an upper bound for any image-agnostic
kernel of that family) and the true kernel (the ceiling: only 8-bit rounding remains).
An estimator is worth running only where it beats the best constant.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from realsr_fast.data.imresize import bicubic_kernel
from realsr_fast.kernel_estimation.gaussians import anisotropic_gaussian, isotropic_gaussian
from realsr_fast.kernel_estimation.postprocess import X2_SIZE
from realsr_fast.ops import degrade

CONSTANT_SIGMAS = np.round(np.arange(0.5, 3.001, 0.05), 2)
"""Standard deviations (px) searched for the best constant isotropic Gaussian."""
MAX_SIDE = 512


#: The test photos (scikit-image's bundled images, imported only when cases are made: it is a test
#: dependency) and the loader of each.
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble", "retina", "coins")
HELD_OUT_PHOTO_NAMES = ("camera", "brick", "grass", "gravel", "moon", "motorcycle", "cell", "text", "page")
"""scikit-image's other bundled photos: a check that a method was not tuned to `PHOTO_NAMES`."""


def _photos() -> dict[str, Callable[[], np.ndarray]]:
    from skimage import data

    return {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea, "rocket": data.rocket,
            "immunohistochemistry": data.immunohistochemistry, "hubble": data.hubble_deep_field,
            "retina": data.retina, "coins": data.coins, "camera": data.camera, "brick": data.brick,
            "grass": data.grass, "gravel": data.gravel, "moon": data.moon,
            "motorcycle": lambda: data.stereo_motorcycle()[0], "cell": data.cell, "text": data.text, "page": data.page}


@dataclass
class Case:
    """One synthetic test image."""

    name: str
    hr: torch.Tensor
    """`(1, 3, H, W)` float32 in [0, 1]."""
    truth: np.ndarray
    """`(11, 11)` float64 true x2 kernel (centre of mass 5.5)."""
    lr: np.ndarray
    """`(H/2, W/2, 3)` uint8: what the estimator sees."""


def make_cases(count: int, seed: int = 2020, side: int = MAX_SIDE, names: Sequence[str] = PHOTO_NAMES) -> list[Case]:
    """`count` cases: the photos `names` in order (cycled), each with a fresh kernel from `seed`.

    Photos are cut to at most `side` x `side` (top-left), even-sized; grey photos become RGB.
    """
    rng = np.random.default_rng(seed)
    photos = _photos()
    cases = []
    for index in range(count):
        name = names[index % len(names)]
        photo = photos[name]()
        photo = np.repeat(photo[..., None], 3, axis=2) if photo.ndim == 2 else photo[..., :3]
        h, w = (min(side, n) // 2 * 2 for n in photo.shape[:2])
        hr = torch.from_numpy(np.ascontiguousarray(photo[:h, :w])).permute(2, 0, 1)[None].float() / 255
        truth = anisotropic_gaussian(rng)
        lr = degrade(hr, torch.from_numpy(truth).float(), 2, padding="symmetric", quantize=True)
        lr_u8 = (lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        suffix = "" if index < len(names) else f"-{index // len(names)}"
        cases.append(Case(name=name + suffix, hr=hr, truth=truth, lr=lr_u8))
    return cases


def on_grid(kernel: np.ndarray, size: int = X2_SIZE) -> np.ndarray:
    """An odd-sized x2 kernel zero-padded (or cut) symmetrically to `size` x `size`, sum 1.

    Odd sizes share KernelGAN's alignment (centre of mass at size//2 + 0.5), so padding both
    sides equally keeps it.
    """
    pad = (size - kernel.shape[0]) // 2
    out = np.pad(kernel, pad) if pad >= 0 else kernel[-pad:pad, -pad:pad]
    return out / out.sum()


def resynthesis_psnrs(case: Case, kernels: np.ndarray) -> np.ndarray:
    """PSNRs (dB) `(K,)` of the LRs that kernels `(K, k, k)` make from the case's HR against the true LR."""
    weights = torch.from_numpy(np.ascontiguousarray(kernels)).float()
    made = degrade(case.hr.expand(len(kernels), -1, -1, -1), weights, 2, padding="symmetric")
    lr = torch.from_numpy(case.lr).permute(2, 0, 1)[None].float() / 255
    return (10 * torch.log10(1 / (made - lr).square().mean(dim=(1, 2, 3)))).double().numpy()


def resynthesis_psnr(case: Case, kernel: np.ndarray) -> float:
    """PSNR (dB) of the LR that `kernel` makes from the case's HR against the true LR."""
    return float(resynthesis_psnrs(case, kernel[None])[0])


def kernel_error(case: Case, kernel: np.ndarray) -> float:
    """L1 distance between `kernel` and the truth on the 17x17 grid."""
    return float(np.abs(on_grid(kernel) - on_grid(case.truth)).sum())


def best_constant_sigma(cases: list[Case]) -> float:
    """The isotropic width (px) with the highest mean re-synthesis PSNR over `cases` (uses the truth)."""
    bank = np.stack([isotropic_gaussian(s) for s in CONSTANT_SIGMAS])
    scores = np.mean([resynthesis_psnrs(c, bank) for c in cases], axis=0)
    return float(CONSTANT_SIGMAS[int(np.argmax(scores))])


@dataclass
class Row:
    """One image's scores: PSNR in dB and kernel L1 error, for each of the four kernels."""

    name: str
    psnr: dict[str, float]
    error: dict[str, float]


def score(cases: list[Case], estimates: list[np.ndarray], constant_sigma: float | None = None) -> list[Row]:
    """Score the estimates beside bicubic, the best constant (width searched unless given) and the truth."""
    sigma = best_constant_sigma(cases) if constant_sigma is None else constant_sigma
    references = {"bicubic": bicubic_kernel(2, X2_SIZE).double().numpy(), "constant": isotropic_gaussian(sigma)}
    rows = []
    for case, estimate in zip(cases, estimates):
        kernels = {"estimate": estimate, **references, "truth": case.truth}
        rows.append(Row(
            name=case.name,
            psnr={key: resynthesis_psnr(case, k) for key, k in kernels.items()},
            error={key: kernel_error(case, k) for key, k in kernels.items()},
        ))
    return rows


def beats_constant(rows: list[Row], margin_db: float = 1.0, share: float = 0.8) -> bool:
    """The issue's bar: mean gain over the best constant >= `margin_db` and a gain on >= `share` of images."""
    gains = np.array([r.psnr["estimate"] - r.psnr["constant"] for r in rows])
    return bool(gains.mean() >= margin_db and (gains > 0).mean() >= share)


def table(rows: list[Row], constant_sigma: float) -> str:
    """A markdown table: per image PSNR (dB) / kernel L1 of estimate, bicubic, best constant, truth; then means."""
    keys = ("estimate", "bicubic", "constant", "truth")
    lines = [
        f"| image | {' | '.join(keys)} | estimate - constant |",
        "|---|" + "---|" * (len(keys) + 1),
    ]

    def line(name: str, psnr: dict[str, float], error: dict[str, float]) -> str:
        cells = " | ".join(f"{psnr[k]:.2f} / {error[k]:.3f}" for k in keys)
        return f"| {name} | {cells} | {psnr['estimate'] - psnr['constant']:+.2f} dB |"

    for r in rows:
        lines.append(line(r.name, r.psnr, r.error))
    mean = {k: float(np.mean([r.psnr[k] for r in rows])) for k in keys}
    mean_error = {k: float(np.mean([r.error[k] for r in rows])) for k in keys}
    lines.append(line("**mean**", mean, mean_error))
    wins = np.mean([r.psnr["estimate"] > r.psnr["constant"] for r in rows])
    lines.append(f"\nCells: re-synthesis PSNR (dB) / kernel L1 error. Best constant: isotropic sigma "
                 f"{constant_sigma:.2f} px. Estimate above the best constant on {100 * wins:.0f}% of images.")
    return "\n".join(lines)
