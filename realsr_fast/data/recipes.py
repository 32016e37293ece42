"""The degradation recipes: what turns an HR image into its LR, one frozen value per recipe.

Parsed once from their names here; the Degrader, the offline dataset builder, the training data
and the demo read the fields instead of testing the name. A new recipe is one entry in `RECIPES`
(docs/METHOD.md §2, §3 and §5 say where each comes from).

Light on purpose (no torch): the CLI reads the offline names for its `--recipe` choices.
"""
from __future__ import annotations

from dataclasses import dataclass

from realsr_fast.errors import RealSRError


@dataclass(frozen=True)
class Recipe:
    """`kernels`: blur with an estimated kernel from the bank (else MATLAB bicubic); `noise`: add
    a zero-mean crop of a real noise patch to the LR; `jpeg`: then JPEG-compress the LR at a quality
    drawn around the camera's (`data.jpeg`). `description`: what it is, for people."""

    name: str
    kernels: bool
    noise: bool
    description: str
    jpeg: bool = False

    @property
    def offline(self) -> bool:
        """Whether `realsr dataset` can write it: noise is added at training time, never stored."""
        return not self.noise


RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe("kernel", kernels=True, noise=False,
           description="a random estimated kernel, every 4th pixel (Track 2 pairs)"),
    Recipe("bicubic", kernels=False, noise=False,
           description="MATLAB bicubic 1/4 (Track 1 pairs)"),
    Recipe("kernel+noise", kernels=True, noise=True,
           description="the paper's: a random estimated kernel, every 4th pixel, plus real noise"),
    Recipe("bicubic+noise", kernels=False, noise=True,
           description="the released DF2K model's training data: MATLAB bicubic 1/4 plus real noise"),
    Recipe("kernel+noise+jpeg", kernels=True, noise=True, jpeg=True,
           description="the paper's, then JPEG at a quality around the photos' own (for JPEG photos)"),
)}

#: How the on-the-fly path picks kernels: one fixed per HR image (RealSR's offline LR), or one per crop.
KERNEL_DRAWS: tuple[str, ...] = ("per_image", "per_sample")

#: The recipes `realsr dataset` writes (no noise).
OFFLINE_RECIPES: tuple[str, ...] = tuple(name for name, recipe in RECIPES.items() if recipe.offline)


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; RealSRError naming the choices for anything else."""
    if name not in RECIPES:
        raise RealSRError(f"unknown degradation recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
