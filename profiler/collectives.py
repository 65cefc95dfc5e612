"""Collectives as the `communication` component of a tensor-parallel forward.

A tensor-parallel layer ends its row-parallel projections (o_proj, down_proj) with an
all-reduce, and the vocabulary-parallel embedding and lm_head reduce or gather across ranks.
transformers issues them two ways: `torch.distributed.all_reduce` on local tensors, and
DTensor redistributions through the functional collectives, whose work is waited for in
`wait_tensor`. Both are wrapped here, for as long as an `instrument` block is open in a
process that is part of a torch.distributed world, so their time (the transfer and the wait
for the slowest rank) is a range of its own, nested in the module that issued it: the
recorder's exclusive time then moves it out of o_proj or mlp into `communication`.
"""
from __future__ import annotations

import functools
from typing import Callable

from analyzers.vocabulary import RangeKey

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


def _wrap(original: Callable, rec) -> Callable:
    keys: dict[int | None, RangeKey] = {}

    @functools.wraps(original)
    def timed(*args, **kwargs):
        layer = rec.layer
        key = keys.get(layer)
        if key is None:
            key = keys[layer] = RangeKey(COMMUNICATION, layer)
        rec.push(key)
        try:
            return original(*args, **kwargs)
        finally:
            rec.pop_if(key)

    timed.__ttft_original__ = original
    return timed


def time_collectives(rec, restores: list) -> bool:
    """Wrap the collectives while a world of several ranks exists; False (nothing wrapped) otherwise."""
    if world() is None:
        return False
    import torch.distributed as dist
    import torch.distributed._functional_collectives as funcol

    for module, names in ((dist, EAGER), (funcol, FUNCTIONAL)):
        for name in names:
            original = getattr(module, name, None)
            if original is None or hasattr(original, "__ttft_original__"):
                continue  # absent in this torch, or already timed by an enclosing block
            setattr(module, name, _wrap(original, rec))
            restores.append(functools.partial(setattr, module, name, original))
    return True


def align_ranks(sync: Callable[[], None]) -> None:
    """Start a timed prefill on every rank at once, so no rank's TTFT includes another's late start.

    `sync` waits for the device (a barrier is queued on the stream under NCCL)."""
    if world() is None:
        return
    import torch.distributed as dist

    dist.barrier()
    sync()
