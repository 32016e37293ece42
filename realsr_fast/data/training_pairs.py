"""`PairMaker`: training pairs made on the device in the official order, equal to the offline ones.

Real-SR makes its LR offline from the WHOLE HR image (blur, every s-th pixel, 8-bit file), with one
kernel per HR image, and only then crops both, flips and rotates them together, and adds real noise
to the LR crop (Real-SR `codes/preprocess/create_kernel_dataset.py`, `codes/data/LQGT_dataset.py`).
On the device the same pairs come from HR crops with a margin
(:class:`realsr_fast.data.crops.ContextCropDataset`), in this order:

1. blur + stride of the whole crop with its kernel (`per_image`: the image's fixed kernel, drawn as
   `realsr dataset --seed` draws it; `per_sample`: a new kernel for every crop), rounded to uint8
   as the offline LR file is;
2. the margin dropped: the centre LR is then the offline LR of the same crop, to float rounding;
3. the same random horizontal flip, vertical flip and transpose of HR and LR (so each kernel is
   also seen in its 8 orientations, as in the official training);
4. with noise, a zero-mean crop of a random real-noise patch added to the LR, clamped to [0, 1].

`per_sample` is not the official draw: it shows every kernel with every image (more kernel
variety per image, for small HR sets or small kernel banks); `per_image` is RealSR's.

Example:
    >>> pairs = PairMaker(degrader, "per_image", image_count=800, seed=10)
    >>> hr, lr = pairs(crops.to("cuda"), image_index.to("cuda"))
    >>> hr.shape, lr.shape     # from (16, 3, 160, 160) uint8 crops with 33x33 kernels at x4
    (torch.Size([16, 3, 128, 128]), torch.Size([16, 3, 32, 32]))
"""
from __future__ import annotations

import torch
from torch import nn

from realsr_fast import ops
from realsr_fast.data.degrader import JPEG_SPREAD, Degrader
from realsr_fast.data.jpeg import compress
from realsr_fast.data.recipes import KERNEL_DRAWS
from realsr_fast.errors import RealSRError

_IDENTITY = torch.ones(1, 1)  # at scale 1, ops.degrade passes the image through (then adds the noise)


def kernel_per_image(images: int, kernels: int, seed: int) -> torch.Tensor:
    """`(images,)` int64: the bank kernel of each HR image (sorted file order), as `realsr dataset
    --seed` assigns them (one draw over all images from a generator seeded with `seed`)."""
    return torch.randint(kernels, (images,), generator=torch.Generator().manual_seed(seed))


def kernel_context(kernel_size: int, scale: int) -> int:
    """The HR margin a `kernel_size` kernel needs on each side (k // 2), rounded up to the LR grid."""
    return scale * -(-(kernel_size // 2) // scale)


class PairMaker(nn.Module):
    """`(B, 3, P + 2c, P + 2c)` uint8 HR crops with margin c and their image indices ->
    `(B, 3, P, P)` uint8 HR and `(B, 3, P/s, P/s)` float32 LR in [0, 1] (module docstring).

    Args:
        degrader: holds the kernels, the noise bank, the scale, the padding and the generator
            that draws every random choice (kernel per sample, flips, noise).
        kernel_draw: ``per_image`` (official) or ``per_sample``.
        image_count: number of HR images (needed by ``per_image``).
        seed: seed of the per-image kernel assignment.
        augment: flips and transposes after the degradation.
    """

    def __init__(self, degrader: Degrader, kernel_draw: str = "per_image", image_count: int | None = None,
                 seed: int = 0, augment: bool = True) -> None:
        super().__init__()
        if kernel_draw not in KERNEL_DRAWS:
            raise RealSRError(f"unknown kernel draw {kernel_draw!r}; choose one of {', '.join(KERNEL_DRAWS)}")
        self.degrader, self.kernel_draw, self.augment = degrader, kernel_draw, augment
        table = None
        if kernel_draw == "per_image":
            if not image_count:
                raise RealSRError("the per_image kernel draw needs the number of HR images")
            table = kernel_per_image(image_count, len(degrader.kernels), seed)
        self.register_buffer("image_kernels", table, persistent=False)

    @property
    def context(self) -> int:
        """The HR margin c each crop must carry on every side."""
        return kernel_context(self.degrader.kernels.shape[-1], self.degrader.scale)

    def _draw(self, high: int, size: tuple[int, ...]) -> torch.Tensor:
        generator = self.degrader.generator
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randint(high, size, generator=generator, device=device)

    def forward(self, crops: torch.Tensor, image_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        deg, c = self.degrader, self.context
        scale, batch = deg.scale, crops.shape[0]
        patch = crops.shape[-1] - 2 * c
        if patch <= 0 or patch % scale or crops.shape[-2] != crops.shape[-1]:
            raise RealSRError(f"crops of {tuple(crops.shape[-2:])} do not hold a square patch that is a multiple of "
                              f"{scale} inside a {c}-px margin")
        if self.kernel_draw == "per_sample":
            kernel_index = self._draw(len(deg.kernels), (batch,))
        else:
            kernel_index = self.image_kernels[image_index.to(self.image_kernels.device)]
        kernels = deg.kernels[kernel_index.to(deg.kernels.device)]
        lr = ops.degrade(crops, kernels, scale, padding=deg.padding, clamp=True, out_dtype=torch.uint8)
        hr = crops[..., c:c + patch, c:c + patch]
        lr = lr[..., c // scale:(c + patch) // scale, c // scale:(c + patch) // scale]
        if self.augment:
            hr, lr = _flip_pairs(hr, lr, self._draw(2, (3, batch)).bool().to(crops.device))
        if not deg.uses_noise:
            return hr.contiguous(), lr.float().div_(255)
        size = lr.shape[-1]
        patch_h, patch_w = deg.noise.shape[-2:]
        if size > min(patch_h, patch_w):
            raise RealSRError(f"the noise patches ({patch_h}x{patch_w}) are smaller than the LR ({size}x{size}); "
                              "use smaller HR crops or mine larger noise patches (--patch)")
        noise_index = self._draw(len(deg.noise), (batch,))
        offset = torch.stack([self._draw(patch_h - size + 1, (batch,)), self._draw(patch_w - size + 1, (batch,))], 1)
        lr = ops.degrade(lr.contiguous(), _IDENTITY.to(lr.device), 1, noise_bank=deg.noise,
                         noise_index=noise_index.to(lr.device), noise_offset=offset.to(lr.device), clamp=True)
        if deg.jpeg_quality is not None:  # the camera's order: blur, sub-sampling, noise, then compression
            low = max(1, round(deg.jpeg_quality) - JPEG_SPREAD)
            high = min(100, round(deg.jpeg_quality) + JPEG_SPREAD)
            lr = compress(lr, (low + self._draw(high - low + 1, (batch,))).tolist())
        return hr.contiguous(), lr


def _flip_pairs(hr: torch.Tensor, lr: torch.Tensor, flips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample b: horizontal flip if `flips[0, b]`, vertical if `flips[1, b]`, then transpose if
    `flips[2, b]` (Real-SR's `augment` order), the same for HR and LR. `flips`: `(3, B)` bool."""
    out = []
    for x in (hr, lr):
        x = torch.where(flips[0].view(-1, 1, 1, 1), x.flip(-1), x)
        x = torch.where(flips[1].view(-1, 1, 1, 1), x.flip(-2), x)
        out.append(torch.where(flips[2].view(-1, 1, 1, 1), x.transpose(-1, -2), x))
    return out[0], out[1]
