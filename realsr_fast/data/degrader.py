"""`Degrader`: RealSR's degradation of a batch of HR crops on their device, in one op call.

LR = (HR * k)↓s + n (docs/METHOD.md §3 and §5): each sample gets a kernel from the kernel
bank and, with noise, a random crop of a random noise patch minus its per-channel mean; the sum
is clamped to [0, 1]. All of it is one :func:`realsr_fast.ops.degrade` call.

Recipes:
- ``kernel``: a random bank kernel per sample, no noise (Track 2's offline LR);
- ``bicubic``: the MATLAB bicubic kernel as the only bank entry (Track 1: LR = imresize(HR, 1/s));
- ``kernel+noise``: a random kernel and a random real-noise crop per sample (the paper's);
- ``bicubic+noise``: the bicubic kernel and real noise (what the released DF2K model trained on).

The random choices are drawn from a ``torch.Generator`` by :meth:`Degrader.sample` and applied
by :meth:`Degrader.apply`; the offline dataset builder uses the same two methods, so the same
choices give the same LR in files and on the fly.

Example:
    >>> degrader = Degrader(load_kernel_bank("kernels/", 4), load_noise_bank("noise/"), scale=4,
    ...                     recipe="kernel+noise", generator=torch.Generator().manual_seed(0)).to("cuda")
    >>> lr = degrader(hr_uint8.to("cuda", non_blocking=True))   # (16, 3, 128, 128) -> (16, 3, 32, 32) float
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from realsr_fast import ops
from realsr_fast.data.imresize import bicubic_kernel
from realsr_fast.data.jpeg import compress
from realsr_fast.data.kernel_bank import KernelBank
from realsr_fast.data.noise_bank import NoiseBank
from realsr_fast.data.recipes import get_recipe
from realsr_fast.errors import RealSRError

JPEG_SPREAD = 5
"""Half-width of the JPEG qualities drawn around the camera's (the ``+jpeg`` recipe)."""


@dataclass
class DegradeChoices:
    """The random choices for a batch of B samples.

    `kernel_index`: `(B,)` int64 rows of the kernel bank; `noise_index`: `(B,)` int64 rows of the
    noise bank and `noise_offset`: `(B, 2)` int64 top-left `(oy, ox)` of each noise crop, or None
    for recipes without noise; `jpeg_quality`: `(B,)` int64 JPEG qualities, or None without JPEG.
    """

    kernel_index: torch.Tensor
    noise_index: torch.Tensor | None = None
    noise_offset: torch.Tensor | None = None
    jpeg_quality: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "DegradeChoices":
        """The same choices on `device` (asynchronous copies)."""
        return self._map(lambda t: t.to(device, non_blocking=True))

    def select(self, index: int) -> "DegradeChoices":
        """The choices of sample `index` alone (a batch of one)."""
        return self._map(lambda t: t[index:index + 1])

    def _map(self, fn) -> "DegradeChoices":
        fields = (self.kernel_index, self.noise_index, self.noise_offset, self.jpeg_quality)
        return DegradeChoices(*(None if t is None else fn(t) for t in fields))


class Degrader(nn.Module):
    """Degrades uint8 (or float) HR batches into LR batches with random kernels and real noise.

    Args:
        kernel_bank: `(N, k, k)` float32 kernels or a :class:`KernelBank`; needed by the ``kernel``
            recipes, unused by the ``bicubic`` ones.
        noise_bank: `(M, 3, Ph, Pw)` uint8 (or float in [0, 1]) patches or a :class:`NoiseBank`;
            needed by the ``+noise`` recipes only.
        scale: the down-scaling factor s.
        recipe: one of :data:`RECIPES`.
        generator: source of the random choices (any device; same seed, same choices); None uses
            torch's global generator.
        padding: boundary rule of the blur (``symmetric`` is RealSR's, see :func:`ops.degrade`).
        jpeg_quality: the camera's JPEG quality (`data.jpeg.jpeg_quality_of_folder`), needed by the
            ``+jpeg`` recipe: each sample's LR is compressed last (blur, sub-sampling, noise, then JPEG,
            the order of the camera) at a quality drawn uniformly from the integers within
            `JPEG_SPREAD` of it (clipped to [1, 100]).

    The banks are non-persistent buffers: ``.to(device)`` moves them, checkpoints do not store them.
    """

    def __init__(
        self,
        kernel_bank: KernelBank | torch.Tensor | None = None,
        noise_bank: NoiseBank | torch.Tensor | None = None,
        scale: int = 4,
        recipe: str = "kernel+noise",
        generator: torch.Generator | None = None,
        padding: str = "symmetric",
        jpeg_quality: float | None = None,
    ) -> None:
        super().__init__()
        spec = get_recipe(recipe)
        if spec.jpeg and jpeg_quality is None:
            raise RealSRError(f"the {recipe!r} recipe needs the photos' JPEG quality (jpeg_quality)")
        if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
            raise RealSRError(f"JPEG quality must be in [1, 100], got {jpeg_quality}")
        self.jpeg_quality = jpeg_quality if spec.jpeg else None
        if padding not in ops.PADDINGS:
            raise RealSRError(f"unknown padding {padding!r}; choose one of {', '.join(ops.PADDINGS)}")
        self.scale, self.recipe, self.generator, self.padding = int(scale), recipe, generator, padding
        if not spec.kernels:
            kernels = bicubic_kernel(self.scale)[None]
        else:
            kernels = kernel_bank.kernels if isinstance(kernel_bank, KernelBank) else kernel_bank
            if kernels is None or kernels.dim() != 3 or len(kernels) == 0:
                raise RealSRError(f"the {recipe!r} recipe needs a non-empty (N, k, k) kernel bank")
        self.register_buffer("kernels", kernels.float().contiguous(), persistent=False)
        noise = None
        if spec.noise:
            noise = noise_bank.patches if isinstance(noise_bank, NoiseBank) else noise_bank
            if noise is None or noise.dim() != 4 or len(noise) == 0:
                raise RealSRError(f"the {recipe!r} recipe needs a non-empty (M, 3, P, P) noise bank")
        self.register_buffer("noise", noise, persistent=False)

    @property
    def uses_noise(self) -> bool:
        return self.noise is not None

    def sample(self, batch: int, lr_size: tuple[int, int]) -> DegradeChoices:
        """Draw the choices for `batch` samples whose LR is `lr_size = (h, w)`.

        They are drawn on the generator's device (CPU for None) in a fixed order: kernel indices,
        then noise indices, then noise offsets.
        """
        device = self.generator.device if self.generator is not None else torch.device("cpu")

        def draw(high: int, size: tuple[int, ...]) -> torch.Tensor:
            return torch.randint(high, size, generator=self.generator, device=device)

        kernel_index = draw(len(self.kernels), (batch,))
        if not self.uses_noise:
            return DegradeChoices(kernel_index)
        patch_h, patch_w = self.noise.shape[-2:]
        height, width = lr_size
        if height > patch_h or width > patch_w:
            raise RealSRError(
                f"the noise patches ({patch_h}x{patch_w}) are smaller than the LR ({height}x{width}); "
                "use smaller HR crops or mine larger noise patches (--patch)"
            )
        noise_index = draw(len(self.noise), (batch,))
        offset = torch.stack([draw(patch_h - height + 1, (batch,)), draw(patch_w - width + 1, (batch,))], dim=1)
        quality = None
        if self.jpeg_quality is not None:
            low = max(1, round(self.jpeg_quality) - JPEG_SPREAD)
            high = min(100, round(self.jpeg_quality) + JPEG_SPREAD)
            quality = low + draw(high - low + 1, (batch,))
        return DegradeChoices(kernel_index, noise_index, offset, quality)

    def lr_size(self, hr: torch.Tensor) -> tuple[int, int]:
        """`(ceil(H / s), ceil(W / s))` of a `(B, C, H, W)` batch."""
        return -(-hr.shape[-2] // self.scale), -(-hr.shape[-1] // self.scale)

    def apply(self, hr: torch.Tensor, choices: DegradeChoices, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Degrade `hr` `(B, C, H, W)` (uint8, or float in [0, 1]) with given choices.

        Returns:
            `(B, C, ceil(H/s), ceil(W/s))` of `out_dtype` (float32 by default; uint8 rounds once).
        """
        choices = choices.to(hr.device)
        if choices.jpeg_quality is not None:
            lr = self.apply(hr, DegradeChoices(choices.kernel_index, choices.noise_index, choices.noise_offset))
            lr = compress(lr, choices.jpeg_quality.tolist())
            return lr if out_dtype in (None, torch.float32) else (
                (lr * 255).round().to(out_dtype) if out_dtype == torch.uint8 else lr.to(out_dtype))
        return ops.degrade(
            hr,
            self.kernels[choices.kernel_index],
            self.scale,
            noise_bank=self.noise,
            noise_index=choices.noise_index,
            noise_offset=choices.noise_offset,
            padding=self.padding,
            clamp=True,
            out_dtype=out_dtype,
        )

    def forward_with_choices(
        self, hr: torch.Tensor, out_dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, DegradeChoices]:
        """Draw choices for the batch, degrade it, and return both."""
        choices = self.sample(hr.shape[0], self.lr_size(hr))
        return self.apply(hr, choices, out_dtype), choices

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        """`(B, C, H, W)` uint8 HR -> `(B, C, ceil(H/s), ceil(W/s))` float32 LR in [0, 1]."""
        return self.forward_with_choices(hr)[0]

    def extra_repr(self) -> str:
        noise = f", noise={tuple(self.noise.shape)}" if self.uses_noise else ""
        jpeg = f", jpeg_quality={self.jpeg_quality}" if self.jpeg_quality is not None else ""
        return f"recipe={self.recipe!r}, scale={self.scale}, kernels={tuple(self.kernels.shape)}{noise}{jpeg}"
