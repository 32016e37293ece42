"""The one way to get an RRDBNet: `load_model(name_or_path)`, and the weights' identity.

Every reader of weights (the `Upscaler`, `realsr export`, the ONNX/TensorRT caches, a training
run's `generator.init`) comes through here, so a new weight format is one reader in `formats.py`.
"""
from __future__ import annotations

import hashlib
import os

import torch

from realsr_fast.models import DEFAULT_MODEL
from realsr_fast.models.formats import StateDict, model_from_state
from realsr_fast.models.rrdbnet import RRDBNet
from realsr_fast.models.zoo import resolve_weights


def load_model(model: str | os.PathLike = DEFAULT_MODEL) -> RRDBNet:
    """A model name from `zoo.MODELS` or a weights file (ncnn .param/.bin, .pth, .safetensors) ->
    an fp32 RRDBNet on the CPU in eval mode, gradients off.

    Raises:
        RealSRError: for an unknown name or an unreadable / non-RRDBNet file.
    """
    return model_from_state(*resolve_weights(model)).requires_grad_(False)


def weights_sha256(state: StateDict) -> str:
    """A hash of the weights themselves (names, shapes and fp32 values in name order), so the same
    model gives the same hash whether it came from ncnn, .pth or safetensors."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()
