"""Inference: the tiler (backend-agnostic) and the `Upscaler` (torch backend)."""
from __future__ import annotations

from realsr_fast.inference.upscaler import Upscaler

__all__ = ["Upscaler"]
