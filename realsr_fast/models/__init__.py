"""Models: RRDBNet, the weight formats it loads from, the named models (zoo) and `load_model`,
the one way to get a network from a name or a weights file.

Light on purpose (the CLI reads `DEFAULT_MODEL` for its help): the rest is imported on first use.
"""
from __future__ import annotations

import importlib

#: The model used when none is named: Real-SR's DF2K x4 model, installed with the package.
DEFAULT_MODEL = "df2k"

_LAZY = {
    "RRDBNet": "realsr_fast.models.rrdbnet",
    "MODELS": "realsr_fast.models.zoo",
    "resolve_weights": "realsr_fast.models.zoo",
    "load_checkpoint": "realsr_fast.models.formats",
    "save_safetensors": "realsr_fast.models.formats",
    "load_model": "realsr_fast.models.loading",
    "weights_sha256": "realsr_fast.models.loading",
}

__all__ = ["DEFAULT_MODEL", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'realsr_fast.models' has no attribute {name!r}")
