"""A synthetic camera for `realsr adapt`: 8 colour photos bundled with scikit-image, cropped to
256-512 px, blurred by one non-Gaussian kernel (a 9-pixel diagonal motion streak convolved with a
disk of radius 1.5) and given signal-dependent sensor noise, variance = 0.5 * I + 4 (0..255 scale,
independent per pixel and channel), then saved as PNG.

    python benchmarks/adapt_synthetic_camera.py /tmp/camera_photos
    realsr adapt /tmp/camera_photos -o /tmp/camera_adapt --minutes 5 --method spectral --threads 1
"""
from __future__ import annotations

import sys
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


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    kernel = camera_kernel()
    for name, top, left, h, w in PHOTOS:
        image = LOADERS[name]()[top:top + h, left:left + w, :3].astype(np.float64)
        blurred = np.stack([convolve(image[..., c], kernel, mode="reflect") for c in range(3)], axis=2)
        noisy = blurred + rng.standard_normal(blurred.shape) * np.sqrt(NOISE_A * np.clip(blurred, 0, 255) + NOISE_B)
        write_image(out / f"{name}.png", np.clip(np.round(noisy), 0, 255).astype(np.uint8))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
