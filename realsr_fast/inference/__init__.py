"""Inference: the tiler (backend-agnostic), the `Upscaler` (torch backend) and the ONNX Runtime /
TensorRT backends. Light on purpose: the submodules import torch."""
from __future__ import annotations

DEFAULT_TILE_PAD = 24
"""LR pixels of context around each tile. The ncnn port uses 10, but measured on photo crops with
32 px tiles that leaves seams of up to 30 grey levels (44-53 dB against the whole image); 24 brings
the largest difference down to 2-6 levels (58-65 dB) for a few percent more work per tile."""
