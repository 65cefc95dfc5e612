"""Telemetry over time in the report, with the TTFT phases shaded.

The samples are the run's nvml.csv (wall-clock `t_ns`). run.json keeps no phase edges, but the
trace does: the traced prefill's five marks (start, end of h2d, forward, sampling, d2h) are in
trace.json.gz's `ttft_profile` metadata, on the same wall clock, so that prefill's phases are
shaded over the samples. A run without a trace (`--no-trace`) gets the curves unshaded and a
note saying why. The per-phase averages are run.json's, as the terminal prints them.
"""
from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pandas as pd

from analyzers.atomic import write_text
from analyzers.render import figures
from analyzers.render.fmt import finite, num
from analyzers.render.report_parts import Place, figure, figure_block, frame_table, note, table
from analyzers.render.terminal import METRIC_FORMAT
from analyzers.telemetry.samples import samples_frame
from analyzers.vocabulary import PHASES

_META_KEY = b'"ttft_profile":{'
_TAIL = 1 << 16  # the metadata is the trace's last key: a few hundred bytes at its very end


def phase_marks(run) -> list[int] | None:
    """The traced prefill's phase edges (wall ns) from the trace's metadata; None without a readable one.

    The trace is streamed and only its tail kept: the metadata is written last, and a GPU trace
    can be hundreds of MB that need not be parsed to read five numbers.
    """
    if not run.trace_file or not run.path:
        return None
    path = Path(run.path) / run.trace_file
    tail = b""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as stream:
            while chunk := stream.read(1 << 20):
                tail = (tail + chunk)[-_TAIL:]
    except (OSError, EOFError, zlib.error):
        return None
    at = tail.rfind(_META_KEY)
    if at < 0:
        return None
    try:
        meta, _end = json.JSONDecoder().raw_decode(tail[at + len(_META_KEY) - 1:].decode("utf-8", "replace"))
    except ValueError:
        return None
    marks = meta.get("phase_marks_unix_ns") if isinstance(meta, dict) else None
    if not isinstance(marks, list) or len(marks) != len(PHASES) + 1 or not all(isinstance(m, int) for m in marks):
        return None
    return marks if marks == sorted(marks) else None


def read_samples(run) -> pd.DataFrame | None:
    """The run's samples of the metrics the report draws; None when it has none or they cannot be read."""
    name = (run.telemetry or {}).get("file")
    if not name or not run.path:
        return None
    try:
        frame = samples_frame(pd.read_csv(Path(run.path) / name))
    except (OSError, ValueError):
        return None
    if not {"t_ns", "metric", "value"} <= set(frame.columns):
        return None
    frame = frame[frame["metric"].isin(METRIC_FORMAT)]
    return frame if len(frame) else None


def telemetry_data(samples: pd.DataFrame, marks: list[int] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(samples in display units against ms since the first sample, the shaded phases on that axis)."""
    t0 = int(samples["t_ns"].min())
    data = samples.assign(t_ms=(samples["t_ns"].astype("int64") - t0) / 1e6)
    scale = {metric: fmt[1] for metric, fmt in METRIC_FORMAT.items()}
    data = data.assign(shown=data["value"] * data["metric"].map(scale),
                       label=data["metric"].map(lambda m: f"{METRIC_FORMAT[m][0]} ({METRIC_FORMAT[m][2].strip()})"))
    data = data[["t_ms", "metric", "label", "shown"]].rename(columns={"shown": "value"})
    phases = pd.DataFrame(columns=["phase", "start_ms", "end_ms", "ms"])
    if marks is not None:
        phases = pd.DataFrame([{"phase": p, "start_ms": (a - t0) / 1e6, "end_ms": (b - t0) / 1e6, "ms": (b - a) / 1e6}
                               for p, a, b in zip(PHASES, marks, marks[1:], strict=False)])
    return data.sort_values(["metric", "t_ms"], kind="stable").reset_index(drop=True), phases


def phase_table(telemetry: dict) -> str:
    """Each phase's averages over the measured repeats (run.json), or why a phase has none."""
    rows = [r for r in telemetry.get("attributed", []) if r.get("group") == "phase"]
    metrics = [m for m in METRIC_FORMAT if any(r.get("metric") == m for r in rows)]
    out = []
    for phase in PHASES:
        mine = {r["metric"]: r for r in rows if r.get("name") == phase}
        if not mine:
            continue
        first = next(iter(mine.values()))
        cells = [phase, num(first.get("covered_ms")), str(first.get("samples", ""))]
        for metric in metrics:
            value = mine.get(metric, {}).get("value")
            cells.append(num(value * METRIC_FORMAT[metric][1]) if finite(value) else "too few samples")
        out.append(cells)
    header = ["phase", "covered ms", "samples"] + [f"{METRIC_FORMAT[m][0]} {METRIC_FORMAT[m][2].strip()}"
                                                   for m in metrics]
    return table(header, out) if out else ""


def telemetry_section(run, place: Place) -> list[str]:
    """The telemetry figure with its phases, the per-phase averages, and the samples one click away."""
    telemetry = run.telemetry
    if not telemetry:
        return []
    samples = read_samples(run)
    out = []
    if samples is None:
        out += ["<h2>Telemetry over time</h2>", note("No telemetry samples to draw (nvml.csv missing or empty).")]
    else:
        marks = phase_marks(run)
        data, phases = telemetry_data(samples, marks)
        phases_csv = place.figs / f"{place.prefix}telemetry_phases.csv"
        write_text(phases_csv, phases.to_csv(index=False, float_format="%.6g"))
        kind = "NVML" if telemetry.get("kind") == "nvml" else "process CPU and memory"
        fig = figure(place, "telemetry", data, figures.telemetry_chart, phases,
                     f"{kind}, every {telemetry.get('interval_ms', 0):g} ms")
        why = ("Shaded: the phases of the traced prefill (the last one), from the trace's phase marks; the "
               "activity before it is the warmup and the timed repeats." if marks is not None else
               "Phases not shaded: their edges are recorded only with a trace, and this run has none (--no-trace).")
        out.append(figure_block(place, "Telemetry over time", fig,
                                f"<p class='note'>Phases: {place.link(phases_csv)}</p>{frame_table(phases)}"
                                f"<p class='note'>Samples (first 200 rows shown):</p>{frame_table(data.head(200))}",
                                f"{telemetry.get('samples', len(samples))} samples over "
                                f"{num(telemetry.get('window_ms'))} ms. {why}"))
        out.append(f"<p class='note'>Every sample as recorded: {place.link(Path(run.path) / telemetry['file'])}.</p>")
    if telemetry.get("warning"):
        out.append(note(f"warning: {telemetry['warning']}"))
    averages = phase_table(telemetry)
    if averages:
        out += ["<h3>Averages per phase, over the measured repeats</h3>", averages]
    return out
