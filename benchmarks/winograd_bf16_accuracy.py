"""How far the bf16 forwards of the default model land from its stock fp32 forward (PSNR, dB).

    python benchmarks/winograd_bf16_accuracy.py            # the reporting photos
    python benchmarks/winograd_bf16_accuracy.py --set dev  # the crops F(4x4, 3x3) was chosen on

Rows: stock PyTorch in bf16 (oneDNN direct convolutions, what `--precision bf16` ran before), the
Winograd trunk with bf16 GEMMs as F(4x4, 3x3) (what it runs now) and as F(6x6, 3x3) (the fp32
path's tile, the alternative), and the fp32 Winograd trunk for scale. Inputs: a 96x96 crop of each
photo, clean and with Gaussian noise of sigma 10/255 (seeded), whose high frequencies are where
Winograd's rounding grows most.

Sets: `dev` is the four bundled sample photos' central crops, on which the bf16 tile was chosen;
`report` (the default) is seven scikit-image photos and textures that no choice looked at, at
seeded random crops. Needs scikit-image for `report`.
"""
from __future__ import annotations

import argparse
import copy
import importlib.resources

import numpy as np
import torch

from realsr_fast.inference.winograd_rrdbnet import WinogradRRDBNet
from realsr_fast.io.reading import read_image
from realsr_fast.io.tensors import image_to_tensor
from realsr_fast.metrics import psnr
from realsr_fast.models.loading import load_model

CROP = 96
NOISE_SIGMA = 10 / 255
SEED = 2026
DEV_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
REPORT_PHOTOS = ("camera", "grass", "gravel", "brick", "moon", "immunohistochemistry", "hubble_deep_field")


def dev_crops() -> dict[str, torch.Tensor]:
    samples = importlib.resources.files("realsr_fast") / "samples"
    crops = {}
    for name in DEV_PHOTOS:
        photo = image_to_tensor(read_image(samples / f"{name}.png"))[:, :3]
        top, left = ((s - CROP) // 2 for s in photo.shape[2:])
        crops[name] = photo[:, :, top:top + CROP, left:left + CROP]
    return crops


def report_crops(generator: torch.Generator) -> dict[str, torch.Tensor]:
    import skimage.data

    crops = {}
    for name in REPORT_PHOTOS:
        image = getattr(skimage.data, name)()
        image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
        photo = image_to_tensor(np.ascontiguousarray(image))
        top, left = (int(torch.randint(0, s - CROP + 1, (), generator=generator)) for s in photo.shape[2:])
        crops[name] = photo[:, :, top:top + CROP, left:left + CROP]
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("dev", "report"), default="report")
    args = parser.parse_args()
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(SEED)
    crops = dev_crops() if args.set == "dev" else report_crops(generator)
    network = load_model().eval()
    stock_bf16 = copy.deepcopy(network).to(torch.bfloat16, memory_format=torch.channels_last)
    forwards = {
        "stock bf16": lambda x: stock_bf16(x.bfloat16().contiguous(memory_format=torch.channels_last)),
        "Winograd F(4x4) bf16": WinogradRRDBNet(network, torch.bfloat16),
        "Winograd F(6x6) bf16": WinogradRRDBNet(network, torch.bfloat16, tile=6),
        "Winograd F(6x6) fp32": WinogradRRDBNet(network),
    }
    scores: dict[str, list[float]] = {name: [] for name in forwards}
    print("| input | " + " | ".join(forwards) + " |")
    print("|---" * (len(forwards) + 1) + "|")
    for name, crop in crops.items():
        noisy = (crop + NOISE_SIGMA * torch.randn(crop.shape, generator=generator)).clamp(0, 1)
        for label, x in ((name, crop), (f"{name} + noise", noisy)):
            with torch.inference_mode():
                reference = network(x).clamp(0, 1)
                row = [psnr(forward(x).float().clamp(0, 1), reference) for forward in forwards.values()]
            for key, value in zip(forwards, row):
                scores[key].append(value)
            print(f"| {label} | " + " | ".join(f"{v:.1f}" for v in row) + " |", flush=True)
    print("| **mean** | " + " | ".join(f"**{np.mean(v):.1f}**" for v in scores.values()) + " |")
    print("| **min** | " + " | ".join(f"**{np.min(v):.1f}**" for v in scores.values()) + " |")


if __name__ == "__main__":
    main()
