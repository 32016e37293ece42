"""Any output size: the model's fixed factor (x4), then a high-quality resize to the size asked for.

`OutputSize` says what the user asked for (`--outscale`, `--width`, `--height`) and turns it into
pixels for one input; `resize_output` takes the model's float output there. `Upscaler.upscale_image`
(`size=`) and the file and video jobs use both, so every backend gets the same sizes and pixels.

Sizes (docs/upscaling.md), for an input of H x W pixels as shown (EXIF orientation applied):
- `scale` s: (round(s * H), round(s * W)), halves rounded up, at least 1 pixel; s is read as the
  decimal it was written as (1.1 * 30 is 33, not 33.000000000000004 rounded);
- `width` only: that width, the height following the aspect ratio, round(width * H / W);
- `height` only: the same the other way round;
- `width` and `height`: exactly that box (the picture is stretched if its aspect ratio differs).

The resize (`resize_output`) is MATLAB's antialiased bicubic (`data.imresize`: Keys a = -0.5, the
kernel widened when shrinking, so nothing aliases) done in linear light: the sRGB curve is undone,
the light is resized and the curve put back. Averaging light rather than its gamma-encoded code
values keeps fine bright-on-dark texture (hair, foliage, text, stars) as bright as it was when
shrinking; averaging the code values darkens it. Alpha is premultiplied for the resize, so the
colour of transparent pixels never bleeds into visible edges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from realsr_fast.errors import RealSRError

if TYPE_CHECKING:
    import torch

#: Below this resized alpha a pixel counts as transparent: its colour is taken unpremultiplied.
_TRANSPARENT = 1e-6


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


@dataclass(frozen=True)
class OutputSize:
    """The output size asked for: a `scale` factor, or a `width` and/or `height` in pixels.

    All None means the model's own factor. Checked when made (RealSRError for a scale <= 0, a
    size < 1, or a scale together with a width or height).

    >>> OutputSize(scale=2).pixels(101, 64, model_scale=4)
    (202, 128)
    >>> OutputSize(width=100).pixels(30, 41, model_scale=4)
    (73, 100)
    """

    scale: float | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        if self.scale is not None:
            if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
                raise RealSRError(f"--outscale must be a number above 0, got {self.scale}")
            if self.width is not None or self.height is not None:
                raise RealSRError("--outscale and --width/--height both set the output size; give one of them")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise RealSRError(f"--{name} must be a whole number of pixels >= 1, got {value}")

    @property
    def is_model_scale(self) -> bool:
        """True when nothing was asked for: the output is the model's own size."""
        return self.scale is None and self.width is None and self.height is None

    def pixels(self, height: int, width: int, model_scale: int) -> tuple[int, int]:
        """(out_height, out_width) for an input of `height` x `width` pixels (rules: module docstring)."""
        if height < 1 or width < 1:
            raise RealSRError(f"cannot size an empty image of {height}x{width} pixels")
        if self.width is not None and self.height is not None:
            return int(self.height), int(self.width)
        if self.width is not None:
            return max(1, _round_half_up(Fraction(int(self.width) * height, width))), int(self.width)
        if self.height is not None:
            return int(self.height), max(1, _round_half_up(Fraction(int(self.height) * width, height)))
        factor = Fraction(model_scale) if self.scale is None else Fraction(repr(float(self.scale)))
        return max(1, _round_half_up(factor * height)), max(1, _round_half_up(factor * width))

    def describe(self) -> str:
        """A few words for messages: 'x4', 'x2.5', '1920 px wide', '1920x1080'."""
        if self.width is not None and self.height is not None:
            return f"{self.width}x{self.height} px"
        if self.width is not None:
            return f"{self.width} px wide"
        if self.height is not None:
            return f"{self.height} px high"
        return "the model's scale" if self.scale is None else f"x{self.scale:g}"


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """The sRGB decoding curve (IEC 61966-2-1) on values in [0, 1]; same shape."""
    import torch

    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """The sRGB encoding curve on linear light, clamped to [0, 1] first; same shape."""
    import torch

    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


def resize_output(y: torch.Tensor, size: tuple[int, int], alpha: bool = False) -> torch.Tensor:
    """Resize the upscaler's `(1, C, h, w)` float output in [0, 1] to `(1, C, size[0], size[1])`.

    C is 1 or 3 (colour), 2 or 4 with `alpha` (its last channel). Antialiased MATLAB bicubic in
    linear light with premultiplied alpha (module docstring); one channel at a time, so the peak
    memory is a few single-channel planes. Returns float32 in [0, 1] on the CPU; `y` as it is
    when it already has that size.
    """
    import torch

    from realsr_fast.data.imresize import imresize

    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise RealSRError(f"the output size must be at least 1x1 pixels, got {out_w}x{out_h}")
    if tuple(y.shape[-2:]) == (out_h, out_w):
        return y
    y = y.detach().to("cpu", torch.float32)
    colours = y.shape[1] - 1 if alpha else y.shape[1]
    planes = []
    opacity = resized_opacity = None
    if alpha:
        opacity = y[0, -1].clamp(0, 1)
        resized_opacity = imresize(opacity[None], size=(out_h, out_w))[0].clamp_(0, 1)
    for channel in range(colours):
        light = srgb_to_linear(y[0, channel])
        if alpha:
            straight = imresize(light[None], size=(out_h, out_w))[0]
            premultiplied = imresize((light * opacity)[None], size=(out_h, out_w))[0]
            visible = resized_opacity > _TRANSPARENT
            light = torch.where(visible, premultiplied / resized_opacity.clamp(min=_TRANSPARENT), straight)
        else:
            light = imresize(light[None], size=(out_h, out_w))[0]
        planes.append(linear_to_srgb(light))
    if alpha:
        planes.append(resized_opacity)
    return torch.stack(planes)[None]
