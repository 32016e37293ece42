"""VGG19 features for the perceptual loss: torchvision's `vgg19().features[:35]` (docs/METHOD.md §7).

The slice ends at conv5_4 before its ReLU, as ESRGAN's `VGGFeatureExtractor(feature_layer=34)`.
Inputs `(B, 3, H, W)` in [0, 1] are normalised with the ImageNet mean and std first.

The ImageNet weights are read from `--vgg-weights PATH`, or else from the torch hub cache
(`<torch hub dir>/checkpoints/vgg19-dcbb9e9d.pth`, torchvision's file name), where they are
downloaded on first use, hash-checked (see `realsr_fast.download`); with REALSR_OFFLINE=1 a missing
file is a RealSRError naming it and where to put it. The trainer resolves them before anything is
trained. `random_init_for_tests=True` builds the
network with seeded random weights instead: a perceptual loss on those is meaningless, so only
tests and the smoke preset use it.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from realsr_fast.download import VGG19, fetch_pretrained
from realsr_fast.errors import RealSRError

FEATURE_LAYERS = 35  # features[:35]: up to conv5_4, before its ReLU
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_TEST_SEED = 0


def resolve_vgg_weights(path: str | os.PathLike | None = None) -> Path:
    """The VGG19 weights file to use: `path` when given, else the torch hub cache's (fetched on first use).

    Raises:
        RealSRError: `path` is missing, or the download is forbidden (REALSR_OFFLINE=1) or failed;
            the message says which file and where to put it.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise RealSRError(f"VGG19 weights {path} do not exist; point --vgg-weights (loss.vgg_weights) "
                              f"at torchvision's {VGG19.name}")
        return path
    try:
        return fetch_pretrained(VGG19)
    except RealSRError as exc:
        raise RealSRError(f"the perceptual loss needs {exc}; or pass loss.vgg_weights=PATH "
                          "(or train in the PSNR-only mode: loss.mode=psnr)") from None


class VGGFeatures(nn.Module):
    """`(B, 3, H, W)` in [0, 1] -> `(B, 512, H/16, W/16)` conv5_4 features (before ReLU), frozen.

    Build it with :meth:`from_weights` (ImageNet) or :meth:`random_for_tests` (test-only).
    """

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_weights(cls, path: str | os.PathLike | None = None) -> "VGGFeatures":
        """The ImageNet network, from `path` or the torch hub cache (see :func:`resolve_vgg_weights`)."""
        path = resolve_vgg_weights(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a truncated or foreign file
            raise RealSRError(f"cannot read {path} as VGG19 weights: {str(exc).splitlines()[0]}") from exc
        features = _vgg19_features()
        prefix = "features."
        wanted = {k: v for k, v in state.items() if k.startswith(prefix)} if isinstance(state, dict) else {}
        try:
            features.load_state_dict({k[len(prefix):]: v for k, v in wanted.items()
                                      if int(k[len(prefix):].split(".")[0]) < FEATURE_LAYERS})
        except (RuntimeError, ValueError) as exc:
            raise RealSRError(f"{path} is not torchvision's VGG19 ({VGG19.name}): {str(exc).splitlines()[0]}") from exc
        return cls(features)

    @classmethod
    def random_for_tests(cls) -> "VGGFeatures":
        """TEST-ONLY: seeded random weights (the global RNG is left as it was). Not a perceptual loss."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_TEST_SEED)
            features = _vgg19_features()
            for conv in features:
                if isinstance(conv, nn.Conv2d):  # torchvision's VGG init: features keep their scale with depth
                    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(conv.bias)
            return cls(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)


def _vgg19_features() -> nn.Sequential:
    """torchvision's VGG19 (config "E") feature layers, without building the 120M-weight classifier."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["E"])[:FEATURE_LAYERS]


def build_vgg(weights: str | os.PathLike | None = None, random_init_for_tests: bool = False) -> VGGFeatures:
    """ImageNet VGG19 features (`weights` or the hub cache), or TEST-ONLY random ones."""
    return VGGFeatures.random_for_tests() if random_init_for_tests else VGGFeatures.from_weights(weights)
