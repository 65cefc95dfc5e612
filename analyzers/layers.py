"""From a run of K built layers to the full model's L: the estimate and its premise.

Building only a few decoder layers makes a large model fit (or start fast),
but the TTFT measured is then that of a K-layer model. Time spent inside
layers (rows carrying a layer index) grows with the number of layers; the
rest (embedding, lm_head, sampling, copies, the unclaimed remainder) does
not. The estimate scales the first by L/K and keeps the second, which is
only sound if the K layers cost about the same: `layer_spread` shows that.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analyzers.components import median_repeat
from analyzers.errors import InputError
from analyzers.run import Run
from analyzers.vocabulary import COMPONENTS, TOTAL

EXTRAPOLATION_COLUMNS = ["component", "measured_ms", "per_layer_ms", "estimate_ms", "factor", "estimate"]
SPREAD_COLUMNS = ["component", "layers", "layer_ms", "mean_ms", "min_ms", "max_ms", "cv", "min_layer", "max_layer"]


def _layer_counts(run: Run) -> tuple[int, int]:
    built, total = int(run.layers_built or 0), int(run.layers_total or 0)
    if built <= 0 or total <= 0:
        raise InputError("the run does not record how many layers were built and how many the model has "
                         "(layers_built / layers_total), so there is nothing to scale by; re-run with a current "
                         "ttft-profile.")
    if built > total:
        raise InputError(f"the run says {built} layers were built of {total}; run.json was edited or is corrupt.")
    return built, total


def _median_rows(run: Run) -> pd.DataFrame:
    rows = pd.DataFrame(run.component_ns, columns=["repeat", "component", "layer", "detail", "ns", "calls"])
    return rows[rows["repeat"] == median_repeat(run)]


def _layered_ms(run: Run) -> pd.Series:
    """ms per component of the median repeat spent in rows that carry a layer index."""
    mine = _median_rows(run).dropna(subset=["layer"])
    return mine.groupby("component")["ns"].sum() / 1e6


def layer_extrapolation(run: Run, table: pd.DataFrame) -> pd.DataFrame:
    """Per component: measured ms (median repeat) and the full-model estimate; a last row `ttft` for the total.

    estimate_ms = (measured − per-layer part) + per-layer part × L/K, where the
    per-layer part is the time of the rows with a layer index. The `estimate`
    column says in words which rule gave each number. With all layers built
    the factor is 1 and the estimate is the measurement.
    """
    built, total = _layer_counts(run)
    factor = total / built
    layered = _layered_ms(run)
    out = []
    for rec in table.itertuples(index=False):
        if not rec.present and rec.ms == 0:
            continue
        part = float(layered.get(rec.component, 0.0))
        est = rec.ms - part + part * factor
        if built == total:
            how = f"measured: all {total} layers built"
        elif part == 0:
            how = "unchanged: not a per-layer component"
        elif math.isclose(part, rec.ms, rel_tol=1e-12, abs_tol=1e-12):
            how = f"estimate: ×{factor:g} ({total} layers / {built} built)"
        else:
            how = f"estimate: per-layer part ×{factor:g} ({total} layers / {built} built), rest unchanged"
        out.append({"component": rec.component, "measured_ms": rec.ms, "per_layer_ms": part,
                    "estimate_ms": est, "factor": factor if part else 1.0, "estimate": how})
    ttft_ms = run.ttft_ns[median_repeat(run)] / 1e6
    layered_sum = float(layered.sum())
    out.append({
        "component": TOTAL,
        "measured_ms": ttft_ms,
        "per_layer_ms": layered_sum,
        "estimate_ms": full_model_ttft_ms(run),
        "factor": factor,
        "estimate": (f"measured: all {total} layers built" if built == total else
                     f"estimate: measured TTFT + ({total}/{built} − 1) × per-layer sum, {total}-layer model"),
    })
    return pd.DataFrame(out, columns=EXTRAPOLATION_COLUMNS)


def full_model_ttft_ms(run: Run) -> float:
    """measured TTFT (median repeat) + (L/K − 1) × the per-layer time of that repeat, in ms."""
    built, total = _layer_counts(run)
    ttft_ms = run.ttft_ns[median_repeat(run)] / 1e6
    return ttft_ms + (total / built - 1) * float(_layered_ms(run).sum())


def layer_spread(run: Run) -> pd.DataFrame:
    """Per component with layer rows: ms of each layer (median repeat), mean, min, max, coefficient of variation.

    cv = population standard deviation / mean over the K layers measured (they
    are all the layers there are, not a sample of them); NaN with fewer than
    two layers, where there is no spread to see. `layer_ms` is a tuple in
    layer order; min_layer / max_layer name the cheapest and dearest layer.
    """
    mine = _median_rows(run).dropna(subset=["layer"])
    per_layer = mine.groupby(["component", "layer"])["ns"].sum() / 1e6
    order = {c: i for i, c in enumerate(COMPONENTS)}
    out = []
    for comp in sorted(per_layer.index.get_level_values(0).unique(), key=lambda c: (order.get(c, len(order)), c)):
        series = per_layer.loc[comp].sort_index()
        values = series.to_numpy(dtype=float)
        mean = float(values.mean())
        cv = float(values.std(ddof=0) / mean) if len(values) >= 2 and mean else math.nan
        out.append({
            "component": comp,
            "layers": len(values),
            "layer_ms": tuple(float(v) for v in values),
            "mean_ms": mean,
            "min_ms": float(values.min()),
            "max_ms": float(values.max()),
            "cv": cv,
            "min_layer": int(series.index[int(np.argmin(values))]),
            "max_layer": int(series.index[int(np.argmax(values))]),
        })
    return pd.DataFrame(out, columns=SPREAD_COLUMNS)
