"""Training checkpoints: G and D weights as safetensors, everything else in a state file.

`OUT/checkpoints/` holds, per saved iteration N (8 digits):
- `G_N.safetensors`: a realsr_fast generator checkpoint (`models.formats.save_safetensors`), which
  `realsr upscale --model PATH` loads as it is;
- `D_N.safetensors`: the discriminator's weights and BatchNorm statistics;
- `state_N.pt`: iteration, optimiser and scheduler states, RNG states (torch, CUDA, numpy, python)
  and the config, read back with `torch.load(weights_only=True)`;
- `latest.json`: names the newest complete set. Every file is written atomically (temp file +
  rename) and `latest.json` last, so a run killed at any moment leaves a complete checkpoint behind.

The data order and the Degrader's draws need no state of their own: both are functions of the
seed, the rank and the iteration (see `train.batches`), so restoring the iteration restores them.
"""
from __future__ import annotations

import io
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from realsr_fast.errors import RealSRError
from realsr_fast.io import atomic_write
from realsr_fast.models.formats import save_safetensors
from realsr_fast.models.rrdbnet import RRDBNet

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"


@dataclass(frozen=True)
class CheckpointFiles:
    """The three files of one saved iteration."""

    iteration: int
    generator: Path
    discriminator: Path
    state: Path

    @classmethod
    def at(cls, folder: Path, iteration: int) -> "CheckpointFiles":
        tag = f"{iteration:08d}"
        return cls(iteration, folder / f"G_{tag}.safetensors", folder / f"D_{tag}.safetensors", folder / f"state_{tag}.pt")


def rng_states() -> dict[str, Any]:
    """This process's global RNG states (torch CPU and CUDA, numpy, python) in weights_only-safe types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Undo :func:`rng_states`: the global generators continue where they were saved."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    out: str | os.PathLike,
    iteration: int,
    generator: RRDBNet,
    discriminator: nn.Module | None,
    state: dict[str, Any],
    keep: int = 2,
) -> CheckpointFiles:
    """Write the checkpoint of `iteration` under `out/checkpoints`, then point latest.json at it.

    `state` is what the trainer restores besides weights (optimisers, schedulers, ...); the
    iteration and RNG states are added here. Only the newest `keep` checkpoints are kept.
    """
    folder = Path(out) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    files = CheckpointFiles.at(folder, iteration)
    save_safetensors(files.generator, generator.state_dict(), generator.config(), {"iteration": str(iteration)})
    if discriminator is not None:
        _save_module(files.discriminator, discriminator)
    buffer = io.BytesIO()
    torch.save({**state, "iteration": iteration, "rng": rng_states()}, buffer)
    with atomic_write(files.state) as f:
        f.write(buffer.getvalue())
    names = {"iteration": iteration, "generator": files.generator.name, "state": files.state.name,
             "discriminator": files.discriminator.name if discriminator is not None else None}
    with atomic_write(folder / LATEST, "w") as f:
        json.dump(names, f, indent=2)
    _prune(folder, keep)
    return files


def _save_module(path: Path, module: nn.Module) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_write(path) as f:
        f.write(save(tensors, metadata={"format": "realsr_fast", "arch": type(module).__name__}))


def _prune(folder: Path, keep: int) -> None:
    iterations = sorted({int(m.group(1)) for p in folder.glob("state_*.pt") if (m := re.match(r"state_(\d+)\.pt$", p.name))})
    for old in iterations[:-keep]:
        files = CheckpointFiles.at(folder, old)
        for path in (files.generator, files.discriminator, files.state):
            path.unlink(missing_ok=True)


def find_checkpoint(path: str | os.PathLike) -> CheckpointFiles:
    """The checkpoint to resume from: a run folder or its `checkpoints/` (the latest), or a `state_N.pt`.

    Raises:
        RealSRError: nothing to resume from there.
    """
    path = Path(path)
    if path.is_file():
        match = re.match(r"state_(\d+)\.pt$", path.name)
        if match is None:
            raise RealSRError(f"{path} is not a training state file (state_<iteration>.pt)")
        return CheckpointFiles.at(path.parent, int(match.group(1)))
    folder = path if (path / LATEST).is_file() else path / CHECKPOINT_DIR
    latest = folder / LATEST
    if not latest.is_file():
        raise RealSRError(f"no checkpoint to resume from in {path} (expected {CHECKPOINT_DIR}/{LATEST}); "
                          "drop --resume to start a new run")
    try:
        names = json.loads(latest.read_text(encoding="utf-8"))
        return CheckpointFiles.at(folder, int(names["iteration"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise RealSRError(f"{latest} is damaged ({exc}); resume from a state file instead: --resume {folder}/state_N.pt") from exc


def load_state(files: CheckpointFiles) -> dict[str, Any]:
    """The state file's dict (weights_only: only tensors and plain Python values are read)."""
    if not files.state.is_file():
        raise RealSRError(f"{files.state} is missing; resume from another checkpoint")
    try:
        return torch.load(files.state, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise RealSRError(f"cannot read {files.state} ({str(exc).splitlines()[0]}); resume from another checkpoint") from exc


def load_module(path: Path, module: nn.Module) -> None:
    """Load a `D_N.safetensors` written by :func:`save_checkpoint` into `module`."""
    from safetensors.torch import load_file

    try:
        module.load_state_dict(load_file(path))
    except (OSError, RuntimeError) as exc:
        raise RealSRError(f"cannot load {path} into the {type(module).__name__} ({str(exc).splitlines()[0]}); "
                          "was the checkpoint made with other discriminator settings?") from exc
