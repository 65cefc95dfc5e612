"""Telemetry per TTFT phase and per component, over all measured repeats.

A sample belongs to the phase whose window holds its timestamp, and to the
innermost component range active at that instant. Averages are given only
where at least `min_samples` samples fell in; otherwise the row says exactly
that, with the time the phase or component covered, instead of a number.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

from analyzers.telemetry.samples import AGGREGATES, samples_frame
from analyzers.vocabulary import HOST_REMAINDER, PHASES

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


@dataclass(frozen=True)
class _Enough:
    """How many samples make an average, and the sampling interval the 'too few' note quotes."""

    min_samples: int
    interval_ms: float

    def row(self, group: str, name: str, metric: str, covered_ms: float, values: pd.Series) -> dict:
        row = {"group": group, "name": name, "metric": metric, "covered_ms": covered_ms, "samples": len(values),
               "value": math.nan, "note": ""}
        if len(values) < self.min_samples:
            row["note"] = (f"{name} covered {covered_ms:.3g} ms in all, {len(values)} sample(s) at "
                           f"{self.interval_ms:g} ms: fewer than {self.min_samples}, so no average")
        else:
            row["value"] = AGGREGATES.get(metric, lambda v: float(v.mean()))(values)
        return row


def _phase_rows(df: pd.DataFrame, marks: list[tuple], enough: _Enough) -> list[dict]:
    """Every phase gets a row for every metric, a note where too few samples fell in it."""
    rows = []
    for phase, spans_of_phase in phase_windows(marks).items():
        covered = sum(hi - lo for lo, hi in spans_of_phase) / 1e6
        mask = pd.Series(False, index=df.index)
        for lo, hi in spans_of_phase:
            mask |= (df["perf_ns"] >= lo) & (df["perf_ns"] <= hi)
        for metric, track in df[mask].groupby("metric"):
            rows.append(enough.row("phase", phase, metric, covered, track["value"]))
        for metric in sorted(set(df["metric"]) - set(df[mask]["metric"])):
            rows.append(enough.row("phase", phase, metric, covered, pd.Series(dtype=float)))
    return rows


def _component_rows(df: pd.DataFrame, marks: list[tuple], spans: list[list[tuple[str, int, int, int]]],
                    enough: _Enough) -> list[dict]:
    """Inside a prefill but outside every range is the host remainder; outside every prefill, nothing."""
    owner = []
    for t in df["perf_ns"]:
        name = None
        for (start, *_rest, end), repeat_spans in zip(marks, spans, strict=True):
            if start <= t <= end:
                name = _innermost(repeat_spans, int(t)) or HOST_REMAINDER
                break
        owner.append(name)
    df = df.assign(component=owner).dropna(subset=["component"])
    covered = exclusive_ms(spans)
    return [enough.row("component", component, metric, covered.get(component, math.nan), track["value"])
            for (component, metric), track in df.groupby(["component", "metric"])]


def attribute_samples(samples, marks: list[tuple], spans: list[list[tuple[str, int, int, int]]] | None,
                      interval_ms: float, min_samples: int = 3) -> pd.DataFrame:
    """Averages per phase (always) and per component (when range spans on the host clock are given)."""
    df = samples_frame(samples)
    df = df[df["value"].notna()]
    enough = _Enough(min_samples, interval_ms)
    rows = _phase_rows(df, marks, enough)
    if spans:
        rows += _component_rows(df, marks, spans, enough)
    return pd.DataFrame(rows, columns=ATTRIBUTED_COLUMNS)
