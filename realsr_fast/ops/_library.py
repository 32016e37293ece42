"""Loads the compiled library (`realsr_fast._C`), which defines the ops under ``torch.ops.realsr_fast``,
or says how to build it."""
from __future__ import annotations

from realsr_fast.errors import RealSRError

try:
    from realsr_fast import _C  # noqa: F401  (loading it registers the ops)
except ImportError as exc:  # pragma: no cover - only without a build
    raise RealSRError(
        f"the compiled ops of realsr_fast are missing ({exc}); build them with "
        "`pip install --no-build-isolation .` in the source folder"
    ) from None
