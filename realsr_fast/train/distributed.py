"""torchrun / DistributedDataParallel helpers: process group, devices, per-rank seeds, rank-0 writes.

`torchrun --nproc_per_node=N -m realsr_fast.cli train CONFIG` sets RANK, WORLD_SIZE and LOCAL_RANK;
:func:`init_distributed` then joins the process group with NCCL on CUDA and gloo on the CPU.
Without those variables everything runs as a single process (rank 0 of 1) and no group is made.
Only rank 0 writes (checkpoints, TensorBoard, validation images); every rank computes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from realsr_fast.device import resolve_device, torchrun_ranks
from realsr_fast.errors import RealSRError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: `rank` of `world_size`, on `device`."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun process group (if any) and pick this rank's device.

    `device` is `auto`, `cpu` or `cuda`; under torchrun with CUDA each rank takes `cuda:LOCAL_RANK`.
    """
    rank, world_size, local_rank = torchrun_ranks()
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RealSRError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                              "start at most one process per GPU (torchrun --nproc_per_node)")
        resolved = torch.device("cuda", local_rank if world_size > 1 else (resolved.index or 0))
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, resolved)


def shutdown(context: DistContext) -> None:
    """Leave the process group made by :func:`init_distributed`."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """Each rank's own seed for its random streams (the same seed on every rank would draw the same
    degradations on all of them)."""
    return seed + 7919 * rank


def wrap(module: nn.Module, context: DistContext, broadcast_buffers: bool = True) -> nn.Module:
    """`module` in DistributedDataParallel when there are several processes, else as it is."""
    if not context.enabled:
        return module
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=broadcast_buffers)


def any_rank(flag: bool, context: DistContext) -> bool:
    """True on every rank when `flag` is true on any (e.g. one rank got SIGTERM: all stop together)."""
    if not context.enabled:
        return flag
    value = torch.tensor([int(flag)], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
