"""DistributedDataParallel with two CPU processes under gloo: the same G on both ranks, rank 0 writes."""
from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.yaml"
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, tmp: str) -> None:
    from realsr_fast.train.config import load_config
    from realsr_fast.train.distributed import init_distributed, shutdown
    from realsr_fast.train.trainer import Trainer

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    # Each rank gets its own run.out: rank 1's must never be created (only rank 0 writes).
    config = load_config(SMOKE, [f"run.out={tmp}/rank{rank}", "loss.perceptual_weight=0", "generator.nf=8",
                                 "generator.gc=8", "discriminator.ndf=8", "data.batch=4", "optim.iterations=3",
                                 "run.checkpoint_every=3", "run.progress=false", "run.tensorboard=false"])
    context = init_distributed("cpu")
    assert torch.distributed.get_backend() == "gloo" and context.world_size == WORLD
    trainer = Trainer(config, context)
    initial = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    first_batch = next(trainer.batches())
    trainer.train()
    shutdown(context)
    torch.save({"initial": initial, "final": trainer.generator.state_dict(), "batch": first_batch,
                "d": {k: v for k, v in trainer.discriminator.named_parameters()}},
               f"{tmp}/result{rank}.pt")  # the test's own record, not the trainer's output


def _spawn(tmp_path: Path, ports: Iterator[int], attempts: int = 3) -> int:
    """Run the workers; a port taken between `_free_port` and rank 0's listen costs a retry, not the
    test. Returns the number of attempts made."""
    for attempt in range(1, attempts + 1):
        try:
            mp.spawn(_worker, args=(next(ports), str(tmp_path)), nprocs=WORLD, join=True)
            return attempt
        except mp.ProcessRaisedException as error:
            taken = "EADDRINUSE" in str(error) or "address already in use" in str(error).lower()
            if not taken or attempt == attempts:
                raise
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_two_gloo_processes_train_the_same_generator(tmp_path):
    _spawn(tmp_path, iter(_free_port, None))
    r0, r1 = (torch.load(tmp_path / f"result{r}.pt", weights_only=True) for r in range(WORLD))
    assert not torch.equal(r0["batch"][0], r1["batch"][0])  # each rank crops its own share of the data
    for key, value in r0["final"].items():
        assert torch.equal(value, r1["final"][key]), key
    assert any(not torch.equal(r0["initial"][k], v) for k, v in r0["final"].items())
    for key, value in r0["d"].items():  # D's gradients are averaged too (its BatchNorm statistics stay per rank)
        torch.testing.assert_close(value, r1["d"][key], rtol=0, atol=1e-6)
    assert (tmp_path / "rank0" / "checkpoints" / "G_00000003.safetensors").is_file()
    assert not (tmp_path / "rank1").exists()


def test_a_taken_port_is_retried_and_other_failures_are_not(tmp_path, monkeypatch):
    # What rank 0 raises when its port was taken (the text of a real run against a listening socket).
    taken = "The server socket has failed to listen on any local network address. port: 1, code: -98, name: EADDRINUSE"
    calls = []

    def spawn(fn, args, nprocs, join):
        calls.append(args[0])
        if len(calls) == 1:
            raise mp.ProcessRaisedException(taken, 0, 1)

    monkeypatch.setattr(mp, "spawn", spawn)
    assert _spawn(tmp_path, itertools.count(50000)) == 2 and calls == [50000, 50001]

    def broken(fn, args, nprocs, join):
        raise mp.ProcessRaisedException("RuntimeError: something else", 0, 1)

    monkeypatch.setattr(mp, "spawn", broken)
    with pytest.raises(mp.ProcessRaisedException, match="something else"):
        _spawn(tmp_path, itertools.count(50000))
