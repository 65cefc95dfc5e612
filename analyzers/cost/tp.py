"""One rank's share of a tensor-parallel prefill, and the collectives between ranks (docs/numbers.md).

K ranks split the model the Megatron way: q/k/v, gate and up by columns, o_proj and down by
rows, the vocabulary of lm_head (and of the input embedding) by rows. Each rank then does 1/K
of every matmul and holds 1/K of their weights, but the rows of the residual stream are whole
on every rank, so norms and residual adds run replicated and two all-reduces a layer put the
row-parallel partial sums back together. What a rank waits for on the wire is priced on the
link of `analyzers.cost.interconnect`, with the ring algorithm NCCL uses for large messages.

What is split and what is not:
- query heads by K (K must divide them); KV heads by K while there are at least K of them,
  else each rank holds one KV head, replicated across the K / kv_heads ranks that share it;
- MLP width by K, MoE experts' widths too (the router stays replicated); a width K does not
  divide leaves the busiest rank ceil(I / K);
- RoPE on the rank's own q/k heads (so it splits with them); the cos/sin tables, the embedding
  (each rank writes the whole [b, n, d], zeros outside its vocabulary rows), norms, residual
  adds and sampling (on the gathered logits) stay whole on every rank.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from analyzers.cost.flops import component_costs
from analyzers.cost.interconnect import Link
from analyzers.cost.model_spec import ModelSpec
from analyzers.errors import ParameterError


@dataclass(frozen=True)
class TensorParallel:
    """K ranks and the link their collectives cross."""

    ranks: int
    link: Link


@dataclass(frozen=True)
class Collective:
    """`count` calls of one collective over a `message_bytes` tensor (the whole tensor, not a rank's part)."""

    kind: str  # "all_reduce" or "all_gather"
    after: str  # the component whose output it completes
    count: int
    message_bytes: int

    def wire_bytes(self, ranks: int) -> float:
        """Bytes one rank sends per call: a ring moves (K-1)/K of the message per pass, an all-reduce makes two."""
        passes = 2 if self.kind == "all_reduce" else 1
        return passes * (ranks - 1) / ranks * self.message_bytes

    def seconds(self, ranks: int, link: Link) -> float:
        """One call on a ring: wire bytes at the per-direction bandwidth, plus one link latency per ring step."""
        steps = (2 if self.kind == "all_reduce" else 1) * (ranks - 1)
        return self.wire_bytes(ranks) / link.bytes_per_s + steps * link.latency_s


def check_ranks(spec: ModelSpec, ranks: int) -> None:
    """K must be a whole number of GPUs that splits the query heads evenly."""
    if ranks < 1:
        raise ParameterError("tp", ranks, "is below 1", "pass the number of GPUs to split the model over, 1 for one")
    if spec.heads % ranks:
        divisors = [k for k in range(1, spec.heads + 1) if spec.heads % k == 0 and k <= 16]
        raise ParameterError("tp", ranks, f"does not divide the model's {spec.heads} attention heads",
                             f"use one of {', '.join(map(str, divisors))}")


def rank_spec(spec: ModelSpec, ranks: int) -> ModelSpec:
    """The model as one rank holds it: the split widths of the module docstring, the busiest rank's share."""
    if ranks == 1:
        return spec
    kv = math.ceil(spec.kv_heads / ranks) if spec.kv_heads >= ranks else 1
    return replace(spec, heads=spec.heads // ranks, kv_heads=kv,
                   intermediate=math.ceil(spec.intermediate / ranks),
                   expert_intermediate=math.ceil(spec.expert_intermediate / ranks),
                   shared_expert_intermediate=math.ceil(spec.shared_expert_intermediate / ranks),
                   vocab=math.ceil(spec.vocab / ranks))


def rank_costs(spec: ModelSpec, seq_len: int, ranks: int, batch: int = 1, dtype_bytes: int = 2,
               attn: str = "sdpa") -> pd.DataFrame:
    """`component_costs` of one rank; sampling is the whole model's, as it runs on the gathered logits."""
    costs = component_costs(rank_spec(spec, ranks), seq_len, batch=batch, dtype_bytes=dtype_bytes, attn=attn)
    if ranks == 1:
        return costs
    whole = component_costs(spec, seq_len, batch=batch, dtype_bytes=dtype_bytes, attn=attn)
    mine, theirs = costs["component"] == "sampling", whole["component"] == "sampling"
    for column in ("flops", "flops_executed", "bytes", "calls"):
        costs.loc[mine, column] = whole.loc[theirs, column].to_numpy()
    return costs


def collectives(spec: ModelSpec, seq_len: int, batch: int = 1, dtype_bytes: int = 2) -> list[Collective]:
    """The collectives of one prefill: what makes the split model compute what the whole one does.

    - the vocabulary-parallel embedding: each rank looks up only its rows, an all-reduce of
      [b, n, d] completes them;
    - o_proj and the MLP's down projection are row-parallel: each leaves a partial sum of
      [b, n, d], one all-reduce each a layer (one a layer for a parallel block, whose attention
      and MLP partial sums add before a single all-reduce);
    - lm_head is column-parallel over the vocabulary: an all-gather of the last position's
      logits, b·V elements, lets every rank sample.
    """
    rows = batch * seq_len * spec.hidden * dtype_bytes
    per_layer = 1 if spec.parallel_block else 2
    return [Collective("all_reduce", "embedding", 1, rows),
            Collective("all_reduce", "o_proj, mlp", per_layer * spec.layers, rows),
            Collective("all_gather", "lm_head", 1, batch * spec.vocab * dtype_bytes)]


def communication(spec: ModelSpec, seq_len: int, parallel: TensorParallel, batch: int = 1,
                  dtype_bytes: int = 2) -> dict:
    """The `communication` row of a rank's table (no FLOPs; bytes on the wire) and its floor.

    The floor adds the collectives one after another: in a plain tensor-parallel forward each
    waits for the matmul before it and the next matmul waits for it. The reduction's own
    arithmetic and memory traffic (K-1 adds per element) are left out: a floor, not an estimate.
    """
    k, link = parallel.ranks, parallel.link
    calls = collectives(spec, seq_len, batch, dtype_bytes)
    seconds = sum(c.count * c.seconds(k, link) for c in calls)
    return {"component": "communication", "flops": 0, "flops_executed": 0,
            "bytes": sum(c.count * c.wire_bytes(k) for c in calls), "calls": sum(c.count for c in calls),
            "floor_ms": seconds * 1e3,
            "collectives": [{"kind": c.kind, "after": c.after, "count": c.count, "message_bytes": c.message_bytes,
                             "wire_bytes_each": c.wire_bytes(k), "ms_each": c.seconds(k, link) * 1e3}
                            for c in calls]}


def link_totals(parallel: TensorParallel) -> dict:
    """The link's facts, for the totals of a prediction (so --json carries what the floor assumed)."""
    link = parallel.link
    return {"tp": parallel.ranks, "interconnect": link.name, "interconnect_kind": link.kind,
            "link_bandwidth_gbs": link.bandwidth_gbs, "link_latency_us": link.latency_us,
            "link_gpus_per_node": link.gpus_per_node, "link_source": link.source}
