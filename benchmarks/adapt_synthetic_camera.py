"""A synthetic camera for `realsr adapt`: 8 colour photos bundled with scikit-image, cropped to
256-512 px, blurred by one lens kernel and given signal-dependent sensor noise, variance = 0.5 * I + 4
(0..255 scale, independent per pixel and channel), then saved as PNG or as JPEG.

Lens kernels (`--blur`): `streak-disk`, a 9-pixel diagonal motion streak convolved with a disk of radius
1.5 (not Gaussian); `gaussian`, an anisotropic Gaussian of widths 2.2 and 1.2 px at 30 degrees.
`--jpeg Q` saves the photos as JPEG at quality Q (Pillow, 4:2:0), as a phone does, instead of PNG.

    python benchmarks/adapt_synthetic_camera.py /tmp/camera_photos [--blur gaussian] [--jpeg 85]
    realsr adapt /tmp/camera_photos -o /tmp/camera_adapt --minutes 15 --threads 2
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.ndimage import convolve
from skimage import data

from realsr_fast.io import write_image

# (name, top, left, height, width): crops of 256-512 px
PHOTOS = [("astronaut", 0, 0, 512, 512), ("coffee", 0, 0, 400, 512), ("chelsea", 0, 0, 300, 451),
          ("rocket", 0, 100, 427, 400), ("motorcycle", 0, 0, 500, 512), ("hubble", 0, 0, 384, 384),
          ("retina", 300, 300, 512, 512), ("ihc", 0, 0, 512, 512)]
LOADERS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea, "rocket": data.rocket,
           "motorcycle": lambda: data.stereo_motorcycle()[0], "hubble": data.hubble_deep_field,
           "retina": data.retina, "ihc": data.immunohistochemistry}
NOISE_A, NOISE_B = 0.5, 4.0


def camera_kernel() -> np.ndarray:
    """A 9-px diagonal motion streak convolved with a disk of radius 1.5 px, normalised to sum 1."""
    streak = np.eye(9)
    y, x = np.mgrid[-2:3, -2:3]
    disk = (x**2 + y**2 <= 1.5**2).astype(float)
    kernel = convolve(np.pad(streak, 2), disk, mode="constant")
    return kernel / kernel.sum()


def gaussian_lens() -> np.ndarray:
    """An anisotropic Gaussian, widths 2.2 and 1.2 px, major axis at 30 degrees, 15x15, sum 1."""
    from realsr_fast.kernel_estimation.gaussians import covariance, gaussian_kernel

    return gaussian_kernel(covariance(2.2, 1.2, np.radians(30)), 15, scale=1)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic camera's photos.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--blur", choices=("streak-disk", "gaussian"), default="streak-disk")
    parser.add_argument("--jpeg", type=int, default=None, metavar="QUALITY", help="save as JPEG at this quality")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    kernel = camera_kernel() if args.blur == "streak-disk" else gaussian_lens()
    suffix = ".png" if args.jpeg is None else ".jpg"
    for name, top, left, h, w in PHOTOS:
        image = LOADERS[name]()[top:top + h, left:left + w, :3].astype(np.float64)
        blurred = np.stack([convolve(image[..., c], kernel, mode="reflect") for c in range(3)], axis=2)
        noisy = blurred + rng.standard_normal(blurred.shape) * np.sqrt(NOISE_A * np.clip(blurred, 0, 255) + NOISE_B)
        write_image(args.out / f"{name}{suffix}", np.clip(np.round(noisy), 0, 255).astype(np.uint8), quality=args.jpeg)


if __name__ == "__main__":
    main()
