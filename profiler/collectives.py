"""Collectives as the `communication` component of a tensor-parallel forward.

A tensor-parallel layer ends its row-parallel projections (o_proj, down_proj) with an
all-reduce, and the vocabulary-parallel embedding and lm_head reduce or gather across ranks.
transformers issues them two ways: `torch.distributed.all_reduce` on local tensors, and
DTensor redistributions through the functional collectives, whose work is waited for in
`wait_tensor`. Both are wrapped here, for as long as an `instrument` block is open in a
process that is part of a torch.distributed world, so their time (the transfer and the wait
for the slowest rank) is a range of its own, nested in the module that issued it: the
recorder's exclusive time then moves it out of o_proj or mlp into `communication`.
This module says what to wrap; `instrument` wraps it with its shared patches.
"""
from __future__ import annotations

from typing import Callable

COMMUNICATION = "communication"
# torch.distributed's eager collectives, and the functional ones DTensor redistributions call.
EAGER = ("all_reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter_tensor", "broadcast",
         "all_to_all_single")
FUNCTIONAL = ("all_reduce", "all_gather_tensor", "reduce_scatter_tensor", "all_to_all_single", "wait_tensor")


def world() -> tuple[int, int] | None:
    """(rank, world size) of an initialised torch.distributed world of more than one rank, else None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return dist.get_rank(), dist.get_world_size()


def targets() -> list[tuple[object, str]]:
    """(module, function name) of every collective to time, while a world of several ranks exists.

    `instrument` patches them through its shared patches (profiler.instrumentation._use_patch), so two
    blocks open at once each see their own model's collectives and the originals return when the last
    block leaves, as for every other patched function."""
    if world() is None:
        return []
    import torch.distributed as dist
    import torch.distributed._functional_collectives as funcol

    return [(module, name) for module, names in ((dist, EAGER), (funcol, FUNCTIONAL)) for name in names
            if callable(getattr(module, name, None))]


def align_ranks(sync: Callable[[], None]) -> None:
    """Start a timed prefill on every rank at once, so no rank's TTFT includes another's late start.

    `sync` waits for the device (a barrier is queued on the stream under NCCL)."""
    if world() is None:
        return
    import torch.distributed as dist

    dist.barrier()
    sync()
