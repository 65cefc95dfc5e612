"""Shard a built model across the ranks with transformers' own tensor-parallel plan.

`from_pretrained(tp_plan="auto")` does this while loading weights (and needs accelerate);
a profile builds its model from a config with random weights, the same on every rank (one
seeded generator), so the plan is applied to the model in memory instead: transformers
resolves its plan (`_resolve_parallel_plans`, the step `from_pretrained` takes) and
`apply_tensor_parallelism` keeps each rank's slice of every sharded weight and installs the
forward transforms that all-reduce the row-parallel outputs. Private API of transformers 5:
a version that moves it fails here in one sentence, not in the middle of a forward.
"""
from __future__ import annotations

from analyzers.errors import InputError


def shard(model, tp: int, device: str) -> None:
    """Shard `model` in place across the `tp` ranks of the initialised default process group."""
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from transformers.distributed import DistributedConfig
        from transformers.distributed.tensor_parallel import apply_tensor_parallelism
    except ImportError as exc:
        raise InputError(f"this transformers cannot shard a model in memory ({exc}); --tp needs transformers 5 "
                         "with transformers.distributed.") from None
    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (tp,))
    plan, _experts, _fsdp = model._resolve_parallel_plans(DistributedConfig(tp_size=tp))
    apply_tensor_parallelism(model, mesh, plan)
