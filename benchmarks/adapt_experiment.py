"""Does `realsr adapt` make the official model better on a degradation it was not trained for?

The official DF2K model was trained on bicubic down-sampling plus real noise. Here clean images
(scikit-image's bundled photos, used as HR) are degraded with 8 wide anisotropic Gaussian x4
kernels (sigma 2.5-4 HR pixels, random angles) and Gaussian noise (sigma 4-8 of 255): a camera it
has never seen. `adapt` holds out whole images, fine-tunes for a fixed wall-clock budget and
scores the held-out images (PSNR-Y / SSIM-Y, 4-pixel border) for the starting model and as it
learns. Results: OUT/summary.json, OUT/curve.png, OUT/report.html; docs/adapt.md has the numbers.

    PYTHONPATH=$PWD python benchmarks/adapt_experiment.py --out /tmp/adapt_exp --minutes 12 --threads 1 \
        --set data.patch=32 --set data.batch=2 --set val.every=10 --set run.checkpoint_every=10 --set optim.lr_g=3e-4
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "cat")
KERNEL_SIZE = 33  # KernelGAN's x4 size


def gaussian_kernel(sigma_x: float, sigma_y: float, angle: float, size: int = KERNEL_SIZE) -> np.ndarray:
    """`(size, size)` anisotropic Gaussian summing to 1, centred on size // 2."""
    r = np.arange(size) - size // 2
    y, x = np.meshgrid(r, r, indexing="ij")
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).astype(np.float32)


def write_camera(root: Path, seed: int) -> tuple[Path, Path, Path]:
    """The HR images, the kernel folder and the noise folder of the unseen 'camera'."""
    import skimage.data

    from realsr_fast.io import write_image

    rng = np.random.default_rng(seed)
    hr, kernels, noise = root / "hr", root / "kernels", root / "noise"
    for folder in (hr, kernels, noise):
        folder.mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        image = getattr(skimage.data, name)()
        image = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        if max(image.shape[:2]) > 640:  # the largest ones: a centre 640 px window keeps each image's weight similar
            top, left = (image.shape[0] - 640) // 2, (image.shape[1] - 640) // 2
            image = image[max(top, 0):max(top, 0) + 640, max(left, 0):max(left, 0) + 640]
        write_image(hr / f"{name}.png", np.ascontiguousarray(image.astype(np.uint8)))
    for i in range(8):
        sigmas = rng.uniform(2.5, 4.0, size=2)
        np.save(kernels / f"k{i}_kernel_x4.npy", gaussian_kernel(sigmas[0], sigmas[1], rng.uniform(0, np.pi)))
    for i, sigma in enumerate(np.linspace(4, 8, 16)):
        patch = np.clip(np.round(128 + sigma * rng.standard_normal((64, 64, 3))), 0, 255).astype(np.uint8)
        write_image(noise / f"n{i:02d}.png", patch)
    return hr, kernels, noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 1 on a shared machine (2 threads spin-wait: 3.5x slower under load 12)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    import torch

    from realsr_fast.adaptation.job import adapt
    from realsr_fast.adaptation.settings import AdaptKernels, AdaptNoise, AdaptSettings, AdaptTraining

    torch.set_num_threads(args.threads)

    hr, kernels, noise = write_camera(args.out / "camera", args.seed)
    load = os.getloadavg()
    started = time.perf_counter()
    settings = AdaptSettings(kernels=AdaptKernels(kernels), noise=AdaptNoise(noise),
                             training=AdaptTraining(minutes=args.minutes, overrides=tuple(args.overrides)),
                             held_out=0.25, clean=False, device="cpu", seed=args.seed)
    result = adapt(hr, args.out / "adapt", settings)
    start, best = result.fine_tune.curve[0], result.fine_tune.best
    record = {"minutes": args.minutes, "threads": args.threads, "overrides": args.overrides, "held_out": settings.held_out,
              "load_average_at_start": load, "load_average_at_end": os.getloadavg(), "cpu_count": os.cpu_count(),
              "wall_seconds": round(time.perf_counter() - started, 1), "iterations": result.fine_tune.iteration,
              "official": start, "adapted": best, "gain_db": best["psnr"] - start["psnr"]}
    (args.out / "experiment.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
