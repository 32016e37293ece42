"""Models: RRDBNet, the weight formats it loads from, and the named models (zoo)."""
from __future__ import annotations

from realsr_fast.models.formats import load_checkpoint, load_model, save_safetensors
from realsr_fast.models.rrdbnet import RRDBNet
from realsr_fast.models.zoo import MODELS, resolve_weights

__all__ = ["RRDBNet", "MODELS", "load_checkpoint", "load_model", "resolve_weights",
           "save_safetensors"]
