"""`realsr upscale` under torchrun: each rank its share of the plan, one summary from rank 0.

`torchrun --nproc_per_node N -m realsr_fast upscale INPUTS -o OUT` starts N copies of the command.
Each plans the same jobs (the plan is deterministic: sorted inputs), keeps jobs `rank::world`
(`shard()`), skips outputs that exist and writes only its own outputs, on its own GPU
(`device.resolve_device` picks `cuda:LOCAL_RANK`). At the end `gather_reports` sends every rank's
reports to rank 0 over a gloo process group (made only for that: the jobs themselves never talk),
which merges them and prints the one summary; a failure on any rank makes rank 0 exit non-zero.
When there are fewer videos than ranks, the ranks share each video's frames instead
(`inference/frame_share.py`: `FrameShare`, frames sent to rank 0, which encodes) over the same
group. docs/scaling_out.md has the commands.
"""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Sequence, TypeVar

from realsr_fast.device import torchrun_ranks

T = TypeVar("T")

# How long rank 0 waits for the slowest rank's report: its share of the work may take hours.
_GATHER_TIMEOUT = timedelta(days=7)
_made_here = False  # whether `process_group` made the group (and `gather_reports` should end it)


def shard() -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) otherwise: a job list's share is `jobs[rank::world]`."""
    rank, world, _ = torchrun_ranks()
    return rank, world


def gather_reports(reports: Sequence[T]) -> list[T] | None:
    """Every rank's `reports` (the same kinds in the same order on every rank) merged on rank 0.

    Outside torchrun the reports are returned as they are. Under torchrun rank 0 gets the merged
    list and the other ranks None (they print nothing). Merging a report dataclass: its list fields
    are concatenated in rank order, `seconds` is the slowest rank's, other numbers are summed.
    """
    rank, world = shard()
    if world == 1:
        return list(reports)
    global _made_here
    import torch.distributed as dist

    process_group()
    try:
        gathered: list | None = [None] * world if rank == 0 else None
        dist.gather_object(list(reports), gathered, dst=0)
    finally:
        if _made_here:
            dist.destroy_process_group()
            _made_here = False
    if rank != 0:
        return None
    return [merge([per_rank[i] for per_rank in gathered]) for i in range(len(reports))]


def process_group():
    """Join torchrun's process group (gloo: small objects and CPU frames only), once."""
    global _made_here
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=_GATHER_TIMEOUT)
        _made_here = True
    return dist.group.WORLD


def merge(reports: Sequence[T]) -> T:
    """One report dataclass from several of the same type (rules: `gather_reports`)."""
    first = reports[0]
    values = {}
    for field in dataclasses.fields(first):
        items = [getattr(report, field.name) for report in reports]
        if isinstance(items[0], list):
            values[field.name] = [item for sublist in items for item in sublist]
        elif field.name == "seconds":
            values[field.name] = max(items)
        elif isinstance(items[0], (int, float)) and not isinstance(items[0], bool):
            values[field.name] = sum(items)
        else:
            values[field.name] = items[0]
    return dataclasses.replace(first, **values)
