"""Every way `--resume` can fail says what is wrong and what to do, without a traceback."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from realsr_fast.cli import main
from realsr_fast.errors import RealSRError
from realsr_fast.train.config import load_config
from realsr_fast.train.distributed import DistContext
from realsr_fast.train.trainer import Trainer

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
TINY = ["loss.perceptual_weight=0", "generator.nf=8", "generator.gc=8", "discriminator.ndf=8", "data.batch=2",
        "data.patch=32", "val.hr=null", "run.tensorboard=false", "run.progress=false", "optim.iterations=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One-iteration GAN and PSNR runs: their output folders."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for mode in ("gan", "psnr"):
        out[mode] = root / mode
        Trainer(load_config(SMOKE, [*TINY, f"loss.mode={mode}", f"run.out={out[mode]}"]), DistContext()).train()
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _resume(run: Path, resume, *extra: str) -> Trainer:
    return Trainer(load_config(SMOKE, [*TINY, f"run.out={run}", *extra]), DistContext(), resume=resume)


def test_a_good_checkpoint_resumes(runs):
    assert _resume(runs["gan"], runs["gan"]).iteration == 1


def test_a_file_that_is_not_a_state_file(runs):
    with pytest.raises(RealSRError, match="G_00000001.safetensors is not a training state file"):
        _resume(runs["gan"], runs["gan"] / "checkpoints" / "G_00000001.safetensors")


def test_damaged_latest_json(runs, tmp_path):
    run = _copy(runs["gan"], tmp_path)
    (run / "checkpoints" / "latest.json").write_text("{\"iter")
    with pytest.raises(RealSRError, match=r"latest.json is damaged .*--resume .*state_N.pt"):
        _resume(run, run)


def test_missing_and_unreadable_state_files(runs, tmp_path):
    run = _copy(runs["gan"], tmp_path)
    state = run / "checkpoints" / "state_00000001.pt"
    state.write_bytes(b"not a torch file")
    with pytest.raises(RealSRError, match="cannot read .*state_00000001.pt.*resume from another checkpoint"):
        _resume(run, run)
    state.unlink()
    with pytest.raises(RealSRError, match="state_00000001.pt is missing"):
        _resume(run, run)


def test_other_discriminator_settings(runs):
    with pytest.raises(RealSRError, match="cannot load .*D_00000001.safetensors into the NLayerDiscriminator"):
        _resume(runs["gan"], runs["gan"], "discriminator.ndf=4")


def test_other_generator_settings(runs):
    with pytest.raises(RealSRError, match="G_00000001.safetensors"):
        _resume(runs["gan"], runs["gan"], "generator.nf=16")


def test_psnr_state_into_a_gan_run_says_to_start_anew(runs):
    with pytest.raises(RealSRError, match="PSNR-mode run .*generator.init=.*G_00000001.safetensors"):
        _resume(runs["psnr"], runs["psnr"])


def test_the_command_line_prints_one_line_and_exits_1(runs, tmp_path, capsys):
    run = _copy(runs["gan"], tmp_path)
    (run / "checkpoints" / "latest.json").write_text("[]")
    assert main(["train", str(SMOKE), *TINY, f"run.out={run}", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "is damaged" in err and "Traceback" not in err
