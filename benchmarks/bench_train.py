"""Training throughput of the real config, and the share of each step spent degrading on the fly.

    python -m pytest benchmarks/bench_train.py --benchmark-json benchmarks/results/train_cpu.json
    python benchmarks/ratios.py benchmarks/results/train_cpu.json

The real config (configs/realsr_dped.yaml: RRDBNet nf 64, nb 23, batch 16, HR 128, PatchGAN, VGG19
perceptual loss), one iteration per round (one round on the CPU: ~a minute each on 2 cores):
- ours: a full training step from uint8 HR crops: degrade on the device (Degrader, kernel + real
  noise per sample), G step, D step;
- baseline `pre_degraded`: the same step on LR made beforehand (what a step costs without any
  degradation); ours / baseline - 1 is the degradation's share of the step.
The degradation alone is also timed (median of 5) and reported in `extra_info` as `degrade_s` and
`degrade_share`. The VGG is randomly initialised (same compute as the ImageNet one, which may not
be present); G starts from random weights (same compute as df2k). Data: the bundled sample photos,
the synthetic kernel and noise banks.
"""
from __future__ import annotations

import statistics
import time
import warnings

import pytest
import torch

from realsr_fast.train.config import load_config
from realsr_fast.train.distributed import DistContext
from realsr_fast.train.trainer import Trainer

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")])]
ROUNDS = {"cpu": dict(rounds=1, iterations=1, warmup_rounds=1), "cuda": dict(rounds=20, iterations=1, warmup_rounds=3)}


def _trainer(device: str, tmp_path) -> Trainer:
    config = load_config("configs/realsr_dped.yaml", [
        "data.hr=builtin:samples", "data.kernels=builtin:synthetic", "data.noise=builtin:synthetic", "data.workers=0",
        "generator.init=null", "loss.vgg_random_init_test_only=true", f"run.device={device}", f"run.out={tmp_path}",
        "run.progress=false", "run.tensorboard=false", f"run.channels_last={str(device == 'cuda').lower()}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(config, DistContext(device=torch.device(device)))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module", params=DEVICES)
def setup(request, tmp_path_factory):
    device = request.param
    trainer = _trainer(device, tmp_path_factory.mktemp("bench_train"))
    hr_u8 = next(trainer.batches())
    return device, trainer, hr_u8


def _degrade_seconds(device: str, trainer: Trainer, hr_u8: torch.Tensor) -> float:
    times = []
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        trainer.degrade(hr_u8)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.mark.benchmark(group="train step (nb 23, batch 16, HR 128)")
def test_train_step_ours(benchmark, setup):
    device, trainer, hr_u8 = setup

    def step():
        trainer.train_step(hr_u8)
        _sync(device)

    benchmark.pedantic(step, **ROUNDS[device])
    degrade = _degrade_seconds(device, trainer, hr_u8)
    benchmark.extra_info.update(device=device, iterations_per_s=1 / benchmark.stats.stats.median,
                                degrade_s=degrade, degrade_share=degrade / benchmark.stats.stats.median)


@pytest.mark.benchmark(group="train step (nb 23, batch 16, HR 128)")
def test_train_step_pre_degraded(benchmark, setup):
    device, trainer, hr_u8 = setup
    hr, lr = trainer.degrade(hr_u8)

    def step():
        trainer.optimise(hr, lr)
        _sync(device)

    benchmark.pedantic(step, **ROUNDS[device])
    benchmark.extra_info.update(device=device, iterations_per_s=1 / benchmark.stats.stats.median)
