"""Telemetry samples (nvml.csv) summarised per span and turned into trace counters.

Torch-free, so a run folder's telemetry can be read on a laptop. Samples are
long-format rows {t_ns, perf_ns, device, metric, value} as the sampler in
profiler/telemetry/ writes them; a NaN value is a gap (an NVML call failed).

A mean of one or two samples of a 10 ms sampler says nothing about a 3 ms
span, so such a span gets no number, only a note saying exactly why.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from analyzers.errors import InputError

SAMPLE_COLUMNS = ("t_ns", "perf_ns", "device", "metric", "value")
SPAN_COLUMNS = ["span", "device", "metric", "start_ns", "end_ns", "duration_ms", "samples", "gaps", "value", "note"]


def _bitwise_or(values: pd.Series) -> int:
    out = 0
    for value in values:
        out |= int(value)
    return out


# How a metric is summarised over a span; the default is the mean. A bitmask has no
# mean: a span's throttle reasons are every reason seen in it.
AGGREGATES: dict[str, Callable[[pd.Series], float]] = {"clock_event_reasons": _bitwise_or}


def samples_frame(samples: pd.DataFrame | Iterable[dict]) -> pd.DataFrame:
    """Samples as a DataFrame with numeric values (gaps NaN), whether read from nvml.csv or a sampler's rows."""
    df = samples if isinstance(samples, pd.DataFrame) else pd.DataFrame(list(samples))
    if df.empty:
        return pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    if "device" not in df.columns:
        df = df.assign(device="")
    return df.assign(value=pd.to_numeric(df["value"], errors="coerce"))


def sample_interval_ms(perf_ns: pd.Series) -> float | None:
    """Median spacing of one track's samples: the cadence it was really read at (GPM is slower)."""
    times = pd.Series(sorted({int(t) for t in perf_ns}), dtype="int64")
    if len(times) < 2:
        return None
    return float(times.diff().dropna().median()) / 1e6


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def _short_note(duration_ms: float, n: int, gaps: int, min_samples: int, interval_ms: float | None,
                metric: str) -> str:
    if interval_ms is not None and duration_ms < min_samples * interval_ms:
        return f"span of {_num(duration_ms)} ms is shorter than {min_samples} samples at {_num(interval_ms)} ms"
    note = f"span of {_num(duration_ms)} ms holds {n} {metric} sample{'' if n == 1 else 's'}, fewer than {min_samples}"
    return note + (f" ({gaps} lost to NVML errors)" if gaps else "")


def span_averages(samples_df: pd.DataFrame | Iterable[dict], spans: list[tuple[str, int, int]],
                  min_samples: int = 3, *, interval_ms: float | None = None) -> pd.DataFrame:
    """Each metric summarised inside each named [start_ns, end_ns] span of the perf_ns clock.

    One row per span x device x metric, in span order. `samples` counts the
    non-gap samples inside (ends included), `gaps` the failed reads. Fewer than
    `min_samples` samples: value NaN and `note` says why. `interval_ms` is the
    sampling interval the note quotes; by default each track's own median spacing.
    """
    df = samples_frame(samples_df)
    tracks = []
    for (device, metric), track in df.groupby(["device", "metric"], sort=True):
        cadence = interval_ms if interval_ms is not None else sample_interval_ms(track["perf_ns"])
        tracks.append((device, metric, track, cadence))
    rows = []
    for name, start, end in spans:
        if end < start:
            raise InputError(f"span {name!r} ends ({end} ns) before it starts ({start} ns); "
                             "give each span as (name, start_ns, end_ns) with end_ns >= start_ns.")
        duration_ms = (end - start) / 1e6
        for device, metric, track, cadence in tracks:
            inside = track[(track["perf_ns"] >= start) & (track["perf_ns"] <= end)]
            values = inside["value"].dropna()
            n, gaps = len(values), len(inside) - len(values)
            row = {"span": name, "device": device, "metric": metric, "start_ns": int(start), "end_ns": int(end),
                   "duration_ms": duration_ms, "samples": n, "gaps": gaps, "value": math.nan, "note": ""}
            if n < min_samples:
                row["note"] = _short_note(duration_ms, n, gaps, min_samples, cadence, metric)
            else:
                row["value"] = AGGREGATES.get(metric, lambda v: float(v.mean()))(values)
            rows.append(row)
    return pd.DataFrame(rows, columns=SPAN_COLUMNS)


def _plain(value: Any) -> int | float:
    """JSON-safe Python number; whole values stay integers (bitmasks, bytes)."""
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def counter_events(samples_df: pd.DataFrame | Iterable[dict], base_time_ns: int, pid: Any, *,
                   window_ns: tuple[int, int] | None = None) -> list[dict]:
    """Chrome-trace counter events ("ph": "C") for the samples; gaps are left out.

    `base_time_ns` is the trace's baseTimeNanoseconds, so ts = (t_ns - base) / 1000 µs.
    With `window_ns` (t_ns clock) only samples inside are kept, plus each track's
    last earlier value placed at the window start: a counter holds its value until
    the next event, so that is the value in force there. With several devices the
    track name is prefixed with the device, else it is the metric.
    """
    df = samples_frame(samples_df)
    df = df[df["value"].notna()].sort_values("t_ns", kind="stable")
    several = df["device"].nunique() > 1
    events = []
    for (device, metric), track in df.groupby(["device", "metric"], sort=True):
        name = f"{device} {metric}" if several else metric
        points = list(zip(track["t_ns"].astype("int64"), track["value"], strict=True))
        if window_ns is not None:
            lo, hi = window_ns
            earlier = [pt for pt in points if pt[0] < lo]
            points = ([(lo, earlier[-1][1])] if earlier else []) + [pt for pt in points if lo <= pt[0] <= hi]
        for t_ns, value in points:
            events.append({"ph": "C", "name": name, "pid": pid, "ts": (int(t_ns) - int(base_time_ns)) / 1000,
                           "args": {metric: _plain(value)}})
    events.sort(key=lambda event: event["ts"])
    return events


def _format(value: Any) -> str:
    if not isinstance(value, float):
        return "" if value is None else str(value)
    if math.isnan(value):
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def write_samples_csv(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write the samples as CSV atomically (a folder gets `nvml.csv`); gaps are empty cells."""
    from analyzers.atomic import write_text

    target = Path(path)
    if target.is_dir():
        target = target / "nvml.csv"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SAMPLE_COLUMNS)
    for row in rows:
        writer.writerow([_format(row.get(col)) for col in SAMPLE_COLUMNS])
    write_text(target, buf.getvalue())
    return target


# nvmlClocksEventReason* bits (the same values as the older nvmlClocksThrottleReason*)
CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "GpuIdle"), (0x2, "ApplicationsClocksSetting"), (0x4, "SwPowerCap"), (0x8, "HwSlowdown"),
    (0x10, "SyncBoost"), (0x20, "SwThermalSlowdown"), (0x40, "HwThermalSlowdown"),
    (0x80, "HwPowerBrakeSlowdown"), (0x100, "DisplayClockSetting"),
)


def throttle_reason_names(mask: int) -> list[str]:
    """Names of the set clock-event bits; unknown bits as hex so nothing is silently dropped."""
    mask = int(mask)
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    unknown = mask & ~sum(bit for bit, _ in CLOCK_EVENT_REASONS)
    if unknown:
        names.append(hex(unknown))
    return names
