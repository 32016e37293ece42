"""End-to-end training on the CPU: the smoke preset, exact resume after SIGKILL, Ctrl-C, missing VGG."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from realsr_fast.cli import main
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image
from realsr_fast.models.formats import load_checkpoint
from realsr_fast.train.config import load_config
from realsr_fast.train.distributed import DistContext
from realsr_fast.train.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.yaml"
SAMPLE = ROOT / "realsr_fast" / "samples" / "coffee.png"
# A smaller smoke run for the process tests: no VGG (weight 0), a narrower G and D, LR steps inside.
TINY = ["loss.perceptual_weight=0", "generator.nf=8", "generator.gc=8", "discriminator.ndf=8", "data.batch=2",
        "val.hr=null", "run.tensorboard=false", "run.progress=false", "run.log_every=1", "optim.milestones=[4,8]"]


@pytest.mark.slow
def test_smoke_preset_trains_validates_and_feeds_upscale(tmp_path):
    config = load_config(SMOKE, [f"run.out={tmp_path / 'run'}", "optim.iterations=16", "run.log_every=1",
                                 "val.every=16", "run.progress=false", "run.checkpoint_every=8"])
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED VGG19"):
        trainer = Trainer(config, DistContext())
    result = trainer.train()
    assert result.iteration == 16 and len(result.history) == 16
    for entry in result.history:
        assert all(math.isfinite(v) for v in entry.values())
        assert {"pixel", "perceptual", "gan", "d"} <= set(entry)
    pixel = [entry["pixel"] for entry in result.history]
    # from ESRGAN's random start L1 falls fast (0.0055 -> 0.0036 in 6 iterations), then wanders
    assert np.mean(pixel[-8:]) < 0.85 * pixel[0]
    assert len(result.validations) == 1 and math.isfinite(result.validations[0]["psnr"])
    assert 0 < result.validations[0]["ssim"] <= 1
    # the generator checkpoint loads in `realsr upscale --model PATH` as it is
    files = result.checkpoint
    state, cfg = load_checkpoint(files.generator)
    assert cfg == trainer.generator.config()
    assert all(torch.equal(state[k], v) for k, v in trainer.generator.state_dict().items())
    out = tmp_path / "up.png"
    assert main(["upscale", str(SAMPLE), "-o", str(out), "--model", str(files.generator), "--device", "cpu"]) == 0
    assert read_image(out).shape[:2] == tuple(4 * s for s in read_image(SAMPLE).shape[:2])
    assert (tmp_path / "run" / "config.yaml").is_file()
    # tensorboard is a test dependency: scalars and sample images are written
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "D_00000008.safetensors", "D_00000016.safetensors", "G_00000008.safetensors", "G_00000016.safetensors",
        "latest.json", "state_00000008.pt", "state_00000016.pt"]


def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "realsr_fast.cli", "train", str(SMOKE), *TINY, f"run.out={out}", *extra]


def _gated(ready: Path, mode: str, out: Path, *extra: str) -> list[str]:
    """`_cli` through tests/train_gate.py (see there): the run signals READY instead of being timed."""
    return [sys.executable, str(ROOT / "tests" / "train_gate.py"), str(ready), mode, str(SMOKE), *TINY,
            f"run.out={out}", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def _latest(out: Path) -> int | None:
    try:
        return json.loads((out / "checkpoints" / "latest.json").read_text())["iteration"]
    except (OSError, ValueError):
        return None


def _wait_for(predicate, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the training process made no progress"
        time.sleep(0.02)


@pytest.mark.slow
def test_resume_after_sigkill_ends_with_the_same_weights(tmp_path):
    iterations = ["optim.iterations=12", "run.checkpoint_every=3"]
    straight = subprocess.run(_cli(tmp_path / "straight", *iterations), env=_env(), capture_output=True, text=True, cwd=ROOT)
    assert straight.returncode == 0, straight.stderr[-2000:]

    ready = tmp_path / "checkpointed"
    killed = subprocess.Popen(_gated(ready, "hold-after-checkpoint", tmp_path / "killed", *iterations), env=_env(),
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(ready.exists, killed)  # the first checkpoint is written and the run can go no further
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    killed.stderr.close()
    assert killed.returncode == -signal.SIGKILL
    assert _latest(tmp_path / "killed") == 3  # killed mid-run, with work after the checkpoint lost

    resumed = subprocess.run(_cli(tmp_path / "killed", *iterations, "--resume"), env=_env(), capture_output=True,
                             text=True, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for prefix in ("G", "D"):
        a = load_file(tmp_path / "straight" / "checkpoints" / f"{prefix}_00000012.safetensors")
        b = load_file(tmp_path / "killed" / "checkpoints" / f"{prefix}_00000012.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=f"{prefix} {key}")
    before, final = (load_file(tmp_path / "straight" / "checkpoints" / f"G_{i:08d}.safetensors") for i in (9, 12))
    assert any(not torch.equal(before[k], final[k]) for k in final)  # the last steps did change the weights


def load_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file as load

    return load(path)


@pytest.mark.slow
def test_sigint_finishes_the_step_and_saves(tmp_path):
    out = tmp_path / "run"
    ready = tmp_path / "stepped"
    process = subprocess.Popen(_gated(ready, "ready-after-step", out, "optim.iterations=100000",
                                      "run.checkpoint_every=100000"),
                               env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(ready.exists, process)  # at least one step done: the run is under way
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "finishing this step" in stderr
    iteration = _latest(out)
    assert iteration is not None and 1 <= iteration < 100000
    assert (out / "checkpoints" / f"G_{iteration:08d}.safetensors").is_file()


def test_missing_vgg_weights_stop_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    out = tmp_path / "run"
    overrides = [f"run.out={out}", "loss.vgg_random_init_test_only=false"]
    with pytest.raises(RealSRError, match="vgg19-dcbb9e9d.pth"):
        Trainer(load_config(SMOKE, overrides), DistContext())
    assert main(["train", str(SMOKE), *overrides]) == 1
    assert "vgg19-dcbb9e9d.pth" in capsys.readouterr().err
    assert not out.exists()


def test_resume_without_checkpoint_is_explained(tmp_path):
    config = load_config(SMOKE, [f"run.out={tmp_path}", *TINY])
    with pytest.raises(RealSRError, match="no checkpoint to resume from"):
        Trainer(config, DistContext(), resume=tmp_path)
