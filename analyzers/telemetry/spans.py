"""Telemetry per TTFT phase and per component, over all measured repeats.

A sample belongs to the phase whose window holds its timestamp, and to the
innermost component range active at that instant. Averages are given only
where at least `min_samples` samples fell in; otherwise the row says exactly
that, with the time the phase or component covered, instead of a number.
"""
from __future__ import annotations

import bisect
import math
from typing import Iterable

import pandas as pd

from analyzers.telemetry.samples import AGGREGATES, _frame

PHASES = ("h2d", "forward", "sampling", "d2h")
ATTRIBUTED_COLUMNS = ["group", "name", "metric", "covered_ms", "samples", "value", "note"]


def phase_windows(marks: Iterable[tuple[int, int, int, int, int]]) -> dict[str, list[tuple[int, int]]]:
    """(start, h2d_end, forward_end, sampling_end, end) per repeat -> windows per phase."""
    windows: dict[str, list[tuple[int, int]]] = {p: [] for p in PHASES}
    for start, h2d_end, forward_end, sampling_end, end in marks:
        for phase, lo, hi in zip(PHASES, (start, h2d_end, forward_end, sampling_end),
                                 (h2d_end, forward_end, sampling_end, end), strict=True):
            windows[phase].append((lo, hi))
    return windows


def _innermost(spans: list[tuple[str, int, int, int]], t: int) -> str | None:
    """Component of the deepest span holding t (spans of one repeat, sorted by start)."""
    best, depth = None, -1
    starts = [s[1] for s in spans]
    for i in range(bisect.bisect_right(starts, t) - 1, -1, -1):
        component, start, end, level = spans[i]
        if start <= t <= end and level > depth:
            best, depth = component, level
    return best


def exclusive_ms(spans: list[list[tuple[str, int, int, int]]]) -> dict[str, float]:
    """Time each component's ranges held the innermost place: the time a sample could land in it."""
    out: dict[str, float] = {}
    for repeat_spans in spans:
        stack: list[tuple[str, int, int]] = []
        for component, start, end, _level in sorted(repeat_spans, key=lambda s: (s[1], -s[2])):
            while stack and stack[-1][2] < start:
                stack.pop()
            out[component] = out.get(component, 0.0) + (end - start) / 1e6
            if stack:  # the parent loses the time this child holds
                parent = stack[-1][0]
                out[parent] = out.get(parent, 0.0) - (end - start) / 1e6
            stack.append((component, start, end))
    return out


def _summary(group: str, name: str, metric: str, covered_ms: float, values: pd.Series, min_samples: int,
             interval_ms: float) -> dict:
    row = {"group": group, "name": name, "metric": metric, "covered_ms": covered_ms, "samples": len(values),
           "value": math.nan, "note": ""}
    if len(values) < min_samples:
        row["note"] = (f"{name} covered {covered_ms:.3g} ms in all, {len(values)} sample(s) at {interval_ms:g} ms: "
                       f"fewer than {min_samples}, so no average")
    else:
        row["value"] = AGGREGATES.get(metric, lambda v: float(v.mean()))(values)
    return row


def attribute_samples(samples, marks: list[tuple], spans: list[list[tuple[str, int, int, int]]] | None,
                      interval_ms: float, min_samples: int = 3) -> pd.DataFrame:
    """Averages per phase (always) and per component (when range spans on the host clock are given)."""
    df = _frame(samples)
    df = df[df["value"].notna()]
    rows = []
    windows = phase_windows(marks)
    for phase, spans_of_phase in windows.items():
        covered = sum(hi - lo for lo, hi in spans_of_phase) / 1e6
        mask = pd.Series(False, index=df.index)
        for lo, hi in spans_of_phase:
            mask |= (df["perf_ns"] >= lo) & (df["perf_ns"] <= hi)
        for metric, track in df[mask].groupby("metric"):
            rows.append(_summary("phase", phase, metric, covered, track["value"], min_samples, interval_ms))
        for metric in sorted(set(df["metric"]) - set(df[mask]["metric"])):
            rows.append(_summary("phase", phase, metric, covered, pd.Series(dtype=float), min_samples, interval_ms))
    if spans:
        owner = []
        for t in df["perf_ns"]:
            name = None
            for (start, *_rest, end), repeat_spans in zip(marks, spans, strict=True):
                if start <= t <= end:
                    name = _innermost(repeat_spans, int(t)) or "other"
                    break
            owner.append(name)
        df = df.assign(component=owner).dropna(subset=["component"])
        covered = exclusive_ms(spans)
        for (component, metric), track in df.groupby(["component", "metric"]):
            rows.append(_summary("component", component, metric, covered.get(component, math.nan), track["value"],
                                 min_samples, interval_ms))
    return pd.DataFrame(rows, columns=ATTRIBUTED_COLUMNS)
