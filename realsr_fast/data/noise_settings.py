"""The mining thresholds (`NoiseSettings`) and RealSR's per track (`NOISE_TRACKS`), apart from the miner.

Light on purpose: `realsr noise --help` reads the defaults from here without importing torch;
`data.noise_mining` imports them from here (and keeps exporting them).
"""
from __future__ import annotations

from dataclasses import dataclass

from realsr_fast.errors import RealSRError


@dataclass(frozen=True)
class NoiseSettings:
    """The mining thresholds; see `data.noise_mining`'s module docstring."""

    patch: int = 256
    stride: int = 256
    max_var: float = 20.0
    min_mean: float = 0.0
    max_per_image: int | None = None
    max_overlap: float | None = None

    def check(self) -> None:
        """Raise RealSRError for values that cannot work."""
        if self.patch < 1 or self.stride < 1:
            raise RealSRError(f"--patch and --stride must be at least 1, got {self.patch} and {self.stride}")
        if self.max_per_image is not None and self.max_per_image < 1:
            raise RealSRError(f"--max-per-image must be at least 1, got {self.max_per_image}")
        if self.max_overlap is not None and not 0 <= self.max_overlap <= 1:
            raise RealSRError(f"--max-overlap is a fraction of a patch's area in [0, 1], got {self.max_overlap}")


#: Real-SR's noise thresholds per NTIRE 2020 track (`codes/preprocess/collect_noise.py`, docs/METHOD.md
#: §4): grey variance below 20, mean above 0 (DF2K, track 1) or 50 (DPED, track 2).
NOISE_TRACKS: dict[str, NoiseSettings] = {"df2k": NoiseSettings(max_var=20.0, min_mean=0.0),
                                          "dped": NoiseSettings(max_var=20.0, min_mean=50.0)}
