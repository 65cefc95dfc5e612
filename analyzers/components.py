"""Per-component tables of a run: the median repeat, with exclusive time per component and layer.

The breakdown is the median repeat itself (nearest-rank p50), not a mix of
per-component medians: only one repeat's rows are guaranteed to sum to its
TTFT, and `other` then holds exactly the time no range claimed.
"""
from __future__ import annotations

import math

import pandas as pd

from analyzers.run import Run
from analyzers.vocabulary import COMPONENTS, remainder_for

BREAKDOWN_COLUMNS = ["component", "ms", "share", "calls", "layers", "ms_per_layer", "ms_min", "ms_max", "present"]


def nearest_rank_index(values: list[int], q: float) -> int:
    """Index (into `values`) of the nearest-rank q-quantile: a real sample, never an interpolation."""
    if not values:
        raise ValueError("no samples")
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    rank = max(1, math.ceil(q * len(values)))
    return order[rank - 1]


def median_repeat(run: Run) -> int:
    return nearest_rank_index(run.ttft_ns, 0.5)


def ttft_stats(run: Run) -> dict:
    """TTFT summary in ms: p50, min, max, cold, and p90 once there are 10 repeats."""
    samples = run.ttft_ns
    stats = {
        "p50_ms": samples[median_repeat(run)] / 1e6,
        "min_ms": min(samples) / 1e6,
        "max_ms": max(samples) / 1e6,
        "cold_ms": run.cold_ttft_ns / 1e6,
        "repeats": len(samples),
    }
    if len(samples) >= 10:
        stats["p90_ms"] = samples[nearest_rank_index(samples, 0.9)] / 1e6
    return stats


def remainder_component(run: Run) -> str:
    return remainder_for(run.timing)


def _per_repeat(run: Run) -> pd.DataFrame:
    """ns per (repeat, component), with the remainder = TTFT minus everything claimed."""
    rows = pd.DataFrame(run.component_ns, columns=["repeat", "component", "layer", "detail", "ns", "calls"])
    claimed = rows.groupby("repeat")["ns"].sum() if len(rows) else pd.Series(dtype="int64")
    other = pd.DataFrame({
        "repeat": range(len(run.ttft_ns)),
        "component": remainder_component(run),
        "ns": [t - int(claimed.get(i, 0)) for i, t in enumerate(run.ttft_ns)],
        "calls": 0,
    })
    return pd.concat([rows, other], ignore_index=True)


def breakdown(run: Run) -> pd.DataFrame:
    """One row per component: ms (median repeat), share of its TTFT, calls, per-layer mean, spread over repeats."""
    per_repeat = _per_repeat(run)
    chosen = median_repeat(run)
    ttft_ms = run.ttft_ns[chosen] / 1e6
    mine = per_repeat[per_repeat["repeat"] == chosen]
    by_comp = mine.groupby("component").agg(ns=("ns", "sum"), calls=("calls", "sum"))
    layered = mine.dropna(subset=["layer"]).groupby("component")
    layers, layered_ns = layered["layer"].nunique(), layered["ns"].sum()
    spread = per_repeat.groupby(["repeat", "component"])["ns"].sum().unstack(fill_value=0)
    present = set(run.components_present) | {remainder_component(run)}
    out = []
    for comp in COMPONENTS:
        ms = float(by_comp["ns"].get(comp, 0)) / 1e6
        n_layers = int(layers.get(comp, 0))
        out.append({
            "component": comp,
            "ms": ms,
            "share": ms / ttft_ms if ttft_ms else 0.0,
            "calls": int(by_comp["calls"].get(comp, 0)),
            "layers": n_layers,
            "ms_per_layer": float(layered_ns.get(comp, 0)) / 1e6 / n_layers if n_layers else float("nan"),
            "ms_min": float(spread[comp].min()) / 1e6 if comp in spread else 0.0,
            "ms_max": float(spread[comp].max()) / 1e6 if comp in spread else 0.0,
            "present": comp in present,
        })
    return pd.DataFrame(out, columns=BREAKDOWN_COLUMNS)


def layer_breakdown(run: Run) -> pd.DataFrame:
    """Median repeat, one row per (component, layer, detail): where per-layer outliers show."""
    rows = pd.DataFrame(run.component_ns, columns=["repeat", "component", "layer", "detail", "ns", "calls"])
    mine = rows[rows["repeat"] == median_repeat(run)].copy()
    mine["ms"] = mine["ns"] / 1e6
    mine["layer"] = mine["layer"].astype("Int64")
    order = {c: i for i, c in enumerate(COMPONENTS)}
    mine["_order"] = mine["component"].map(order)
    mine = mine.sort_values(["_order", "layer", "detail"], na_position="first")
    return mine[["component", "layer", "detail", "ms", "calls"]].reset_index(drop=True)
