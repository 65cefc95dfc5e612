"""`ttft-profile analyze PATH`: a saved run folder, or any Kineto trace.

Pure analysis (pandas, rich): works on a laptop without torch, on traces made
by anyone (vLLM, SGLang, a training script) as well as our own.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analyzers.trace.attribute import (
    annotation_self_time,
    attribute,
    by_annotation,
    classify_kernels,
    device_events,
    top_kernels,
    top_kernels_by_component,
)
from analyzers.trace.load import load_trace


def analyze_trace(path: str | Path, top: int = 10) -> dict:
    """Tables for one trace: by our components when it has `ttft/` ranges, else by kernel class."""
    frame = load_trace(path)
    names = frame["name"].astype(str)
    has_ranges = bool(names.str.startswith("ttft/").any())
    dev = device_events(frame)
    out = {
        "path": str(path),
        "events": int(len(frame)),
        "device_events": int(len(dev)),
        "device_ms": float(dev["dur_us"].sum()) / 1e3,
        "grouping": "ttft components" if has_ranges else "kernel classes",
        "tables": {},
    }
    if has_ranges:
        out["tables"]["components"] = attribute(frame)
        if len(dev):
            out["tables"]["top kernels per component"] = top_kernels_by_component(frame, 3)
    if not len(dev) and not has_ranges:
        annotations = annotation_self_time(frame)
        if len(annotations):
            out["grouping"] = "user annotations (CPU self time)"
            out["tables"]["by user annotation (CPU self time)"] = annotations.head(top)
    if len(dev):
        out["tables"]["kernel classes"] = classify_kernels(frame)
        out["tables"]["top kernels"] = top_kernels(frame, top)[["name", "kernel_class", "ms", "share", "count"]]
        annotations = by_annotation(frame)
        if len(annotations):
            out["tables"]["by user annotation"] = annotations.head(top)
    return out


def _cell(value) -> str:
    from rich.markup import escape

    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:,.3f}"
    return escape(str(value))  # kernel and annotation names hold [brackets] rich would eat


def render_frame(frame: pd.DataFrame, title: str, console, total_label: str | None = None) -> None:
    from rich.table import Table

    grid = Table(title=title, title_justify="left", show_footer=total_label is not None, pad_edge=False)
    for column in frame.columns:
        footer = ""
        if total_label is not None:
            if column == frame.columns[0]:
                footer = total_label
            elif column == "ms":
                footer = f"{frame['ms'].sum():,.3f}"
            elif column == "count":
                footer = str(int(frame["count"].sum()))
            elif column == "share":
                footer = f"{100 * frame['share'].sum():.1f}%"
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        grid.add_column(column, justify="right" if numeric else "left", footer=footer,
                        overflow="ellipsis", no_wrap=True, max_width=None if numeric else 72)
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            cells.append(f"{100 * value:.1f}%" if column == "share" else _cell(value))
        grid.add_row(*cells)
    console.print(grid)


def render_trace_report(report: dict, console) -> None:
    from rich.markup import escape

    console.print(f"[bold]{escape(report['path'])}[/]: {report['events']:,} events, {report['device_events']:,} device "
                  f"events, {report['device_ms']:,.3f} ms of device time; grouped by {report['grouping']}")
    tables = report["tables"]
    if not tables:
        console.print("no device events and no ttft/ ranges: nothing to attribute in this trace.")
    for title, frame in tables.items():
        total = {"components": "total", "kernel classes": "all device events"}.get(title)
        render_frame(frame, title, console, total_label=total)


def trace_report_json(report: dict) -> dict:
    data = {k: v for k, v in report.items() if k != "tables"}
    data["tables"] = {title: frame.to_dict("records") for title, frame in report["tables"].items()}
    return data
