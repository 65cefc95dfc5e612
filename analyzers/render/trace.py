"""A `TraceReport` for people (rich tables) and for machines (`analyze --json`).

Kernel and annotation names come from other people's code and hold [brackets]
(`void at::native::...<float, 4>[...]`, `[param|cuda]`), which rich would read
as markup and eat; every name printed here is escaped.
"""
from __future__ import annotations

import math

import pandas as pd

from analyzers.render.fmt import plain
from analyzers.trace.report import TraceReport

__all__ = ["render_ranks", "render_trace", "ranks_json", "trace_json"]

# Tables whose rows add up to the whole get a footer with the total, named for what it covers.
TOTAL_LABELS = {"components": "total", "kernel classes": "all device events",
                "components (from module frames)": "all device events", "steps": "all device events",
                "kernel classes (prefill steps only)": "prefill device events"}
NAME_WIDTH = 72  # kernel names run to hundreds of characters of template arguments


def render_trace(report: TraceReport, console) -> None:
    from rich.markup import escape

    t = report.totals
    console.print(f"[bold]{escape(plain(report.path))}[/]: {t.events:,} events, {t.kernels:,} kernels "
                  f"({t.kernel_ms:,.3f} ms), memcpy {t.memcpy_ms:,.3f} ms, memset {t.memset_ms:,.3f} ms, "
                  f"{t.device_ms:,.3f} ms of device time; grouped by {report.grouping}")
    if t.unlinked_kernels:
        names = ", ".join(f"{escape(plain(u['name'])[:80])} ({u['count']})" for u in t.unlinked[:3])
        console.print(f"{t.unlinked_kernels:,} of {t.kernels:,} kernels have no launch in the trace (launched before "
                      f"it began, or from a graph replay): shown as `unlinked`, e.g. {names}")
    if not report.tables:
        console.print("no device events and no ttft/ ranges: nothing to attribute in this trace.")
    for title, frame in report.tables.items():
        _render_frame(frame, title, console, total_label=TOTAL_LABELS.get(title))
        if title == "kernel classes" and report.coverage.get("device_ms"):
            c = report.coverage
            console.print(f"classified by launching op {100 * c['op']['share']:.1f}%, by kernel name "
                          f"{100 * c['name']['share']:.1f}%, by neither {100 * c['none']['share']:.1f}% of device time",
                          markup=False)


def trace_json(report: TraceReport) -> dict:
    """What `analyze --json` prints: the report's fields, each table as a list of row objects."""
    return {
        "path": report.path,
        **report.totals.as_dict(),
        "steps": report.steps,
        "classification_coverage": report.coverage,
        "device_events": report.device_events,
        "grouping": report.grouping,
        "tables": {title: frame.to_dict("records") for title, frame in report.tables.items()},
    }


def render_ranks(ranks: pd.DataFrame, console) -> None:
    """A folder of per-rank traces: each rank's device and communication time, and how far the slowest lags."""
    _render_frame(ranks, "ranks", console)
    slowest = ranks[ranks["slowest"]]
    if len(slowest) and len(ranks) > 1:
        row = slowest.iloc[0]
        console.print(f"slowest rank {int(row['rank'])}: {row['step_ms']:,.3f} ms on the device, "
                      f"{row['lag_ms']:,.3f} ms behind the fastest; the others wait for it at each collective.",
                      markup=False)


def ranks_json(ranks: pd.DataFrame) -> dict:
    """What `analyze RANK_FOLDER --json` prints."""
    return {"ranks": ranks.to_dict("records")}


def _render_frame(frame: pd.DataFrame, title: str, console, total_label: str | None = None) -> None:
    from rich.table import Table

    grid = Table(title=title, title_justify="left", show_footer=total_label is not None, pad_edge=False)
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        grid.add_column(column, justify="right" if numeric else "left", footer=_footer(frame, column, total_label),
                        overflow="ellipsis", no_wrap=True, max_width=None if numeric else NAME_WIDTH)
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            cells.append(f"{100 * value:.1f}%" if column == "share" else _cell(value))
        grid.add_row(*cells)
    console.print(grid)


def _footer(frame: pd.DataFrame, column: str, total_label: str | None) -> str:
    if total_label is None:
        return ""
    if column == frame.columns[0]:
        return total_label
    if column == "ms":
        return f"{frame['ms'].sum():,.3f}"
    if column == "count":
        return str(int(frame["count"].sum()))
    if column == "share":
        return f"{100 * frame['share'].sum():.1f}%"
    return ""


def _cell(value) -> str:
    from rich.markup import escape

    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:,.3f}"
    return escape(plain(str(value)))  # kernel and annotation names hold [brackets] rich would eat
