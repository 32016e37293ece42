"""realsr_fast: real-world super-resolution (RealSR), fast.

Heavy pieces (the compiled ops, the models) are imported lazily so that `import realsr_fast`
and `realsr --help` stay quick.
"""
from realsr_fast._version import __version__
from realsr_fast.errors import RealSRError

__all__ = ["__version__", "RealSRError"]
