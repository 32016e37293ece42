"""Training settings no other test runs: PSNR mode, the VGG-128 discriminator, generator.init=df2k,
channels_last, compile, bf16 and loader workers; each for one or two tiny iterations."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from realsr_fast.models.discriminators import VGG128Discriminator
from realsr_fast.models.zoo import resolve_weights
from realsr_fast.train.config import load_config
from realsr_fast.train.distributed import DistContext
from realsr_fast.train.trainer import Trainer

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
TINY = ["loss.perceptual_weight=0", "generator.nf=8", "generator.gc=8", "discriminator.ndf=4", "data.batch=2",
        "val.hr=null", "run.tensorboard=false", "run.progress=false", "run.log_every=1", "optim.iterations=2",
        "run.checkpoint_every=100"]


def _trainer(tmp_path: Path, *extra: str) -> Trainer:
    return Trainer(load_config(SMOKE, [*TINY, f"run.out={tmp_path / 'run'}", *extra]), DistContext())


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.generator.state_dict().items()}


def _trained(trainer: Trainer) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    result = trainer.train()
    assert result.iteration == 2
    for entry in result.history:
        assert all(math.isfinite(v) for v in entry.values())
    return _weights(trainer), result.history


def test_psnr_mode_has_no_discriminator_and_trains_on_l1_alone(tmp_path):
    trainer = _trainer(tmp_path, "loss.mode=psnr", "loss.pixel_weight=1")
    assert trainer.discriminator is None and trainer.perceptual is None
    before = _weights(trainer)
    after, history = _trained(trainer)
    assert set(history[0]) == {"iteration", "pixel", "total", "lr_g"}
    assert history[0]["total"] == history[0]["pixel"]
    assert any(not torch.equal(before[k], after[k]) for k in after)


def test_vgg128_discriminator_trains_on_128_pixel_crops(tmp_path):
    trainer = _trainer(tmp_path, "discriminator.arch=vgg128", "data.patch=128")
    assert isinstance(trainer.discriminator, VGG128Discriminator)
    d_before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    _, history = _trained(trainer)
    assert {"gan", "d", "d_real", "d_fake"} <= set(history[0])
    assert any(not torch.equal(d_before[k], v) for k, v in trainer.discriminator.state_dict().items())


@pytest.mark.slow  # the full-size RRDBNet, converted from the ncnn weights into a fresh cache
def test_generator_init_df2k_starts_from_the_published_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("REALSR_FAST_HOME", str(tmp_path / "cache"))
    trainer = _trainer(tmp_path, "generator.init=df2k", "generator.nf=64", "generator.gc=32", "generator.nb=23",
                       "optim.iterations=1")
    published, _ = resolve_weights("df2k")
    state = trainer.generator.state_dict()
    assert state.keys() == published.keys()
    assert all(torch.equal(state[k], published[k].float()) for k in state)
    assert trainer.train().iteration == 1


def test_channels_last_trains_like_the_default_layout(tmp_path):
    plain, _ = _trained(_trainer(tmp_path / "a", "run.channels_last=false"))
    trainer = _trainer(tmp_path / "b", "run.channels_last=true")
    assert trainer.generator.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    lay, _ = _trained(trainer)
    for key in plain:
        torch.testing.assert_close(lay[key], plain[key], rtol=1e-4, atol=1e-5, msg=key)


def test_bf16_autocast_trains_close_to_fp32(tmp_path):
    fp32, h32 = _trained(_trainer(tmp_path / "a", "run.precision=fp32"))
    trainer = _trainer(tmp_path / "b", "run.precision=bf16")
    assert trainer.amp_dtype == torch.bfloat16
    bf16, h16 = _trained(trainer)
    assert h16[0]["pixel"] == pytest.approx(h32[0]["pixel"], rel=0.05)  # same data, bf16 rounding only
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)  # autocast really ran


def test_loader_workers_give_the_same_batches(tmp_path):
    def first_batches(workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Three loader batches: (HR crops with their kernel context, image indices) each."""
        trainer = _trainer(tmp_path / f"w{workers}", f"data.workers={workers}")
        batches = trainer.batches()
        return [next(batches) for _ in range(3)]

    for a, b in zip(first_batches(0), first_batches(2), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_compiled_generator_trains_like_eager_without_inductor(tmp_path, monkeypatch):
    """run.compile in the default suite: G goes through torch.compile's graph capture and
    AOTAutograd as in the heavy test below, with the aot_eager backend standing in for inductor's
    C++ build (143 s here, cold). Catches graph breaks or errors in G's forward and backward and a
    compiled G that trains differently or is not the one trained."""
    real_compile, aot_eager = torch.compile, torch._dynamo.lookup_backend("aot_eager")
    compiled_modules, graphs = [], []

    def capture(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        graphs.append(graph)
        return aot_eager(graph, example_inputs)

    def compile_without_inductor(module, **options):
        compiled_modules.append(module)
        return real_compile(module, **{**options, "backend": capture, "fullgraph": True})

    eager, _ = _trained(_trainer(tmp_path / "a"))
    monkeypatch.setattr(torch, "compile", compile_without_inductor)
    trainer = _trainer(tmp_path / "b", "run.compile=true")
    assert compiled_modules == [trainer.generator]
    compiled, _ = _trained(trainer)
    assert graphs  # the compiled G is the one that ran
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.heavy  # torch.compile's inductor build of G: about 5 minutes on a busy 2-core CPU
def test_compiled_generator_trains_like_eager(tmp_path):
    eager, _ = _trained(_trainer(tmp_path / "a"))
    compiled, _ = _trained(_trainer(tmp_path / "b", "run.compile=true"))
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5, msg=key)
