"""realsr_fast: real-world super-resolution (RealSR), fast.

Heavy pieces (the compiled ops, the models) are imported lazily so that `import realsr_fast`
and `realsr --help` stay quick.
"""
from realsr_fast._version import __version__
from realsr_fast.errors import RealSRError

__all__ = ["__version__", "RealSRError", "Upscaler", "adapt"]


def __getattr__(name: str):
    if name == "Upscaler":  # imported on first use: it loads torch and the models
        from realsr_fast.inference.upscaler import Upscaler

        return Upscaler
    if name == "adapt":  # the whole pipeline: torch, KernelGAN, the Trainer
        from realsr_fast.adaptation.job import adapt

        return adapt
    raise AttributeError(f"module 'realsr_fast' has no attribute {name!r}")
