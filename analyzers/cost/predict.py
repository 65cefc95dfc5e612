"""`ttft-profile predict`: the TTFT floor of a model on a GPU, before renting one.

Needs only a config and a hardware row, so it runs without torch and for
lengths that would never fit in memory. A floor is what the hardware
allows; with efficiencies (assumed, or measured in a saved run) it becomes
an estimate of what to expect.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import pandas as pd

from analyzers.cost.ceilings import Ceilings
from analyzers.cost.roofline import physical_floor, roofline, ttft_floor_ms
from analyzers.cost.tp import TensorParallel, check_ranks, communication, link_totals, rank_costs, rank_spec
from analyzers.errors import InputError
from analyzers.vocabulary import COMPONENTS, dtype_bytes


@dataclass(frozen=True)
class Prediction:
    """A floor (and estimate) per component for one model, length and GPU: what `predict` shows."""

    model: str
    seq_len: int
    batch: int
    dtype: str
    gpu_key: str
    gpu_name: str
    table: pd.DataFrame
    totals: dict
    scaling: tuple[dict, ...] = ()  # `tp_scaling` rows, when the floor was asked for several GPUs


def predict(config: dict, seq_len: int, ceilings: Ceilings, dtype: str, batch: int = 1, attn: str = "sdpa",
            efficiencies: Mapping[str, float] | float | None = None,
            tp: int | TensorParallel = 1, **execution: int | None) -> tuple[pd.DataFrame, dict]:
    """(per-component table, totals). With efficiencies, `estimate_ms` = floor / efficiency per component.

    Two floors: `floor_ms` sums the per-component floors (each component's own traffic, the model
    as written, unfused); `physical_floor_ms` is the whole prefill's physical limit
    (`analyzers.cost.roofline.physical_floor`), which no engine, fused or not, can beat.

    With `tp` K > 1 (a count, priced on the GPU's fastest link that joins K, or a `TensorParallel`
    naming the link) every figure is one rank's (`analyzers.cost.tp`): what rank 0's TTFT floor
    is. The table gains a `communication` row (the collectives, bytes on the wire), and the
    physical limit becomes the largest of compute, memory and the wire, which may all overlap.
    K = 1 is the single-GPU prediction, figure for figure.

    `chunk=C` (in `execution`) prices a chunked prefill (`analyzers.cost.flops.component_costs`): the
    same useful FLOPs, more bytes (weights read once a forward, each chunk's attention re-reading the
    cached K and V). The physical limit stays the unchunked prefill's, which no engine can beat.
    """
    from analyzers.cost.flops import chunk_spans, minimum_bytes
    from analyzers.cost.model_spec import ModelSpec

    spec = ModelSpec.from_config(config)
    parallel = tensor_parallel(spec, tp, ceilings.details.get("key"))
    ranks, e = (parallel.ranks if parallel else 1), dtype_bytes(dtype)
    chunk = _chunk_of(execution, seq_len)
    costs = _rank_costs(spec, seq_len, ranks, batch, e, attn, chunk)
    table = roofline(costs, ceilings, dtype).drop(columns=["measured_ms", "efficiency", "headroom_ms"])
    wire = communication(spec, seq_len, parallel, batch, e) if parallel else None
    compute_memory = (float(table["flops"].sum()), float(table["bytes"].sum()))
    if wire is not None:
        table = _with_communication(table, wire)
    floor = ttft_floor_ms(table)
    table["share_of_floor"] = table["floor_ms"] / floor if floor else 0.0
    moved = minimum_bytes(rank_spec(spec, ranks), seq_len, batch=batch, dtype_bytes=e)
    limit = physical_floor(compute_memory[0], float(moved.total), ceilings, dtype)
    totals = {"flops": compute_memory[0], "flops_executed": float(table["flops_executed"].sum()),
              "bytes": compute_memory[1], "floor_ms": floor,
              "physical_floor_ms": limit["floor_ms"], "physical_flops": limit["flops"],
              "physical_bytes": limit["bytes"], "physical_bound": limit["bound"],
              "physical_compute_ms": limit["compute_ms"], "physical_memory_ms": limit["memory_ms"],
              "physical_bytes_weights": float(moved.weights), "physical_bytes_kv_cache": float(moved.kv_cache),
              "physical_bytes_tokens": float(moved.tokens)}
    if chunk is not None:
        totals.update({"chunk": chunk, "chunks": len(chunk_spans(seq_len, chunk))})
    if wire is not None:
        totals.update(_parallel_totals(parallel, wire, floor, limit))
    if efficiencies is not None:
        _estimate(table, totals, efficiencies)
    return table, totals


def _chunk_of(execution: dict, seq_len: int) -> int | None:
    """The chunk size a prediction prices; None unchunked (a chunk not below the prompt is one forward)."""
    unknown = sorted(set(execution) - {"chunk"})
    if unknown:
        raise TypeError(f"predict() got unknown option {unknown[0]!r}; the only one is chunk.")
    chunk = execution.get("chunk")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise InputError(f"chunk {chunk!r} is not a positive number of tokens; pass the tokens per chunk, or None.")
    return chunk if chunk is not None and chunk < seq_len else None


def _rank_costs(spec, seq_len: int, ranks: int, batch: int, e: int, attn: str, chunk: int | None) -> pd.DataFrame:
    """`rank_costs`, chunked where asked: one rank's shard, sampling the whole model's (it runs on the
    gathered logits, once, whatever the chunks)."""
    from analyzers.cost.flops import component_costs

    if chunk is None:
        return rank_costs(spec, seq_len, ranks, batch=batch, dtype_bytes=e, attn=attn)
    costs = component_costs(rank_spec(spec, ranks), seq_len, batch=batch, dtype_bytes=e, attn=attn, chunk=chunk)
    if ranks > 1:
        whole = component_costs(spec, seq_len, batch=batch, dtype_bytes=e, attn=attn)
        mine, theirs = costs["component"] == "sampling", whole["component"] == "sampling"
        for column in ("flops", "flops_executed", "bytes", "calls"):
            costs.loc[mine, column] = whole.loc[theirs, column].to_numpy()
    return costs


def tensor_parallel(spec, tp: int | TensorParallel, gpu_key: str | None,
                    kind: str | None = None) -> TensorParallel | None:
    """The ranks and link of a prediction, checked; None for one GPU (no collectives at all)."""
    from analyzers.cost.interconnect import link_for

    ranks = tp.ranks if isinstance(tp, TensorParallel) else int(tp)
    check_ranks(spec, ranks)
    if ranks == 1:
        return None
    if isinstance(tp, TensorParallel):
        return tp
    if not gpu_key:
        raise InputError("a tensor-parallel floor needs the GPU's links, which only the hardware table has; "
                         "pass --gpu NAME.")
    return TensorParallel(ranks, link_for(gpu_key, ranks, kind))


def scaling(config: dict, seq_len: int, ceilings: Ceilings, dtype: str, batch: int = 1, attn: str = "sdpa",
            kind: str | None = None, ranks: int = 1) -> list[dict]:
    """The per-rank floor for K = 1, 2, 4, 8, ... (and `ranks`): every K the model's heads and one
    node's link allow, so that where the wire starts to dominate reads off one line."""
    from analyzers.cost.interconnect import links
    from analyzers.cost.model_spec import ModelSpec

    spec, key = ModelSpec.from_config(config), ceilings.details.get("key")
    have = [link for k, link in links(key).items() if kind in (None, k)] if key else []
    widest = max((link.gpus_per_node for link in have), default=1)
    counts = sorted({2 ** i for i in range(widest.bit_length()) if 2 ** i <= widest} | {ranks})
    rows = []
    for k in (k for k in counts if spec.heads % k == 0 and k <= widest):
        _, totals = predict(config, seq_len, ceilings, dtype, batch, attn, tp=tensor_parallel(spec, k, key, kind) or 1)
        wire = totals.get("communication_floor_ms", 0.0)
        rows.append({"tp": k, "interconnect": totals.get("interconnect"), "floor_ms": totals["floor_ms"],
                     "communication_floor_ms": wire, "communication_share": wire / totals["floor_ms"],
                     "physical_floor_ms": totals["physical_floor_ms"]})
    return rows


def communication_dominates_from(rows: list[dict]) -> int | None:
    """The first K whose communication floor exceeds every other component's floor together
    (more than half of the rank's TTFT floor); None when no K of `rows` gets there."""
    return next((row["tp"] for row in rows if row["communication_share"] > 0.5), None)


def _with_communication(table: pd.DataFrame, wire: dict) -> pd.DataFrame:
    """The table with the `communication` row where the vocabulary puts it (after mlp)."""
    row = {"component": "communication", "flops": 0.0, "flops_executed": 0.0, "bytes": float(wire["bytes"]),
           "intensity": 0.0, "compute_floor_ms": 0.0, "memory_floor_ms": 0.0, "floor_ms": wire["floor_ms"],
           "bound": "link"}
    at = COMPONENTS.index("communication")
    before = [c in COMPONENTS[:at] for c in table["component"]]
    cut = sum(before)
    return pd.concat([table.iloc[:cut], pd.DataFrame([row]), table.iloc[cut:]], ignore_index=True)


def _parallel_totals(parallel: TensorParallel, wire: dict, floor: float, limit: dict) -> dict:
    physical = max(limit["floor_ms"], wire["floor_ms"])
    return {**link_totals(parallel), "communication_floor_ms": wire["floor_ms"],
            "communication_bytes": float(wire["bytes"]), "communication_calls": int(wire["calls"]),
            "communication_share": wire["floor_ms"] / floor if floor else 0.0,
            "compute_memory_floor_ms": floor - wire["floor_ms"], "collectives": wire["collectives"],
            "physical_communication_ms": wire["floor_ms"], "physical_floor_ms": physical,
            "physical_bound": "link" if wire["floor_ms"] > limit["floor_ms"] else limit["bound"]}


def _estimate(table: pd.DataFrame, totals: dict, efficiencies: Mapping[str, float] | float) -> None:
    if isinstance(efficiencies, (int, float)):
        assumed = {c: float(efficiencies) for c in table["component"]}
    else:
        assumed = {c: float(e) for c, e in efficiencies.items() if e and not math.isnan(e)}
    table["efficiency"] = [assumed.get(c, math.nan) for c in table["component"]]
    # a component without an efficiency keeps its floor: the estimate then stays a lower bound there
    table["estimate_ms"] = [f / e if e and not math.isnan(e) else f
                            for f, e in zip(table["floor_ms"], table["efficiency"], strict=True)]
    totals["estimate_ms"] = float(table["estimate_ms"].sum())


def efficiencies_from_run(run, roof: pd.DataFrame | None) -> dict[str, float]:
    """Measured efficiency per component of a saved run (its roofline, `RunTables.roofline`), to scale a prediction."""
    table = roof
    if table is None:
        raise InputError(f"the run in {run.path} recorded no ceilings, so it has no efficiencies; "
                         "calibrate the device it ran on and profile it again.")
    # Above 1 a ceiling was wrong, not a kernel fast: such a component carries no efficiency, so its
    # estimate stays at its floor rather than dropping below it.
    return {c: (e if e <= 1 else math.nan) for c, e in zip(table["component"], table["efficiency"], strict=True)}
