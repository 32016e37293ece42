"""Optional packages (the install extras): import one, or say in one line which extra brings it."""
from __future__ import annotations

import importlib
from types import ModuleType

from realsr_fast.errors import RealSRError


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """`import module`, or RealSRError naming the extra to install.

    Args:
        module: the import name ("onnxruntime", "tensorrt", ...).
        extra: the realsr_fast extra that installs it ("onnx", "tensorrt", "train").
        purpose: what needs it, for the message ("ONNX export").
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RealSRError(f"{purpose} needs the `{module}` package, which is not installed: "
                          f"pip install 'realsr_fast[{extra}]'") from None
