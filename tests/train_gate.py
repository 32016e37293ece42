"""`realsr train` with test gates, for the process tests of test_train_run.py (not a test module).

    python tests/train_gate.py READY_FILE MODE realsr-train-arguments...

MODE `hold-after-checkpoint`: after the first checkpoint is written the next step never finishes,
so a SIGKILL sent once READY_FILE exists always lands mid-run (the run cannot end first).
MODE `ready-after-step`: READY_FILE appears once a training step has completed, so a signal sent
then always finds a run under way (no fixed sleep).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from realsr_fast.cli import main
from realsr_fast.train.trainer import Trainer


def _install(ready: Path, mode: str) -> None:
    save, step = Trainer.save, Trainer.train_step
    saved = []

    def gated_save(self):
        files = save(self)
        saved.append(files)
        if mode == "hold-after-checkpoint":
            ready.touch()
        return files

    def gated_step(self, batch):
        if mode == "hold-after-checkpoint" and saved:
            time.sleep(3600)  # killed here
        losses = step(self, batch)
        if mode == "ready-after-step":
            ready.touch()
        return losses

    Trainer.save, Trainer.train_step = gated_save, gated_step


if __name__ == "__main__":
    _install(Path(sys.argv[1]), sys.argv[2])
    sys.exit(main(["train", *sys.argv[3:]]))
