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
from analyzers.errors import InputError
from analyzers.vocabulary import dtype_bytes


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


def predict(config: dict, seq_len: int, ceilings: Ceilings, dtype: str, batch: int = 1, attn: str = "sdpa",
            efficiencies: Mapping[str, float] | float | None = None) -> tuple[pd.DataFrame, dict]:
    """(per-component table, totals). With efficiencies, `estimate_ms` = floor / efficiency per component.

    Two floors: `floor_ms` sums the per-component floors (each component's own traffic, the model
    as written, unfused); `physical_floor_ms` is the whole prefill's physical limit
    (`analyzers.cost.roofline.physical_floor`), which no engine, fused or not, can beat.
    """
    from analyzers.cost.flops import component_costs, minimum_bytes
    from analyzers.cost.model_spec import ModelSpec

    spec = ModelSpec.from_config(config)
    costs = component_costs(spec, seq_len, batch=batch, dtype_bytes=dtype_bytes(dtype), attn=attn)
    table = roofline(costs, ceilings, dtype).drop(columns=["measured_ms", "efficiency", "headroom_ms"])
    floor = ttft_floor_ms(table)
    table["share_of_floor"] = table["floor_ms"] / floor if floor else 0.0
    moved = minimum_bytes(spec, seq_len, batch=batch, dtype_bytes=dtype_bytes(dtype))
    limit = physical_floor(float(table["flops"].sum()), float(moved.total), ceilings, dtype)
    totals = {"flops": float(table["flops"].sum()), "flops_executed": float(table["flops_executed"].sum()),
              "bytes": float(table["bytes"].sum()), "floor_ms": floor,
              "physical_floor_ms": limit["floor_ms"], "physical_flops": limit["flops"],
              "physical_bytes": limit["bytes"], "physical_bound": limit["bound"],
              "physical_compute_ms": limit["compute_ms"], "physical_memory_ms": limit["memory_ms"],
              "physical_bytes_weights": float(moved.weights), "physical_bytes_kv_cache": float(moved.kv_cache),
              "physical_bytes_tokens": float(moved.tokens)}
    if efficiencies is not None:
        if isinstance(efficiencies, (int, float)):
            assumed = {c: float(efficiencies) for c in table["component"]}
        else:
            assumed = {c: float(e) for c, e in efficiencies.items() if e and not math.isnan(e)}
        table["efficiency"] = [assumed.get(c, math.nan) for c in table["component"]]
        # a component without an efficiency keeps its floor: the estimate then stays a lower bound there
        table["estimate_ms"] = [f / e if e and not math.isnan(e) else f
                                for f, e in zip(table["floor_ms"], table["efficiency"], strict=True)]
        totals["estimate_ms"] = float(table["estimate_ms"].sum())
    return table, totals


def efficiencies_from_run(run, roof: pd.DataFrame | None) -> dict[str, float]:
    """Measured efficiency per component of a saved run (its roofline, `RunTables.roofline`), to scale a prediction."""
    table = roof
    if table is None:
        raise InputError(f"the run in {run.path} recorded no ceilings, so it has no efficiencies; "
                         "calibrate the device it ran on and profile it again.")
    # Above 1 a ceiling was wrong, not a kernel fast: such a component carries no efficiency, so its
    # estimate stays at its floor rather than dropping below it.
    return {c: (e if e <= 1 else math.nan) for c, e in zip(table["component"], table["efficiency"], strict=True)}
