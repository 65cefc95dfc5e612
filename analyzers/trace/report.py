"""`ttft-profile analyze TRACE`: load -> link -> tables, for any Kineto trace.

Pure analysis (pandas): works on a laptop without torch, on traces made by
anyone (vLLM, SGLang, a training script) as well as our own. Rendering lives
in `analyzers.render.trace`, so a caller that wants the numbers gets them
without rich.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from analyzers.trace import modules, steps, tables
from analyzers.trace.link import UNLINKED, LinkedTrace, link
from analyzers.trace.load import load_trace

__all__ = ["TraceReport", "analyze_trace", "report_tables"]

BY_COMPONENT, BY_CLASS, BY_CPU_ANNOTATION = "ttft components", "kernel classes", "user annotations (CPU self time)"
BY_MODULE = "module frames (innermost nn.Module around each launch)"
MODULE_TABLE, MODULE_LAYERS = "components (from module frames)", "per layer (from module frames)"
FRAMES_EXPLAIN = 0.5  # share of linked device time module frames must name to group the trace by them
STEP_TABLE, PREFILL_CLASSES = "steps", "kernel classes (prefill steps only)"
CPU_ANNOTATION_TABLE = "by user annotation (CPU self time)"
TOP_PER_COMPONENT = 3  # per component, a few names are enough to say which kernel to look at


KERNEL_CATS = frozenset({"kernel"})
MEMCPY_CATS = frozenset({"gpu_memcpy", "memcpy"})
MEMSET_CATS = frozenset({"gpu_memset", "memset"})
UNLINKED_SHOWN = 20  # unlinked kernels listed by name, the most expensive first


@dataclass(frozen=True)
class TraceTotals:
    """The figures a script checks first: how much there was, and how much of it could be linked."""

    events: int
    kernels: int
    kernel_ms: float
    memcpy_ms: float
    memset_ms: float
    device_ms: float
    linked_kernels: int
    unlinked_kernels: int
    unlinked: list[dict]  # [{name, count, ms}], most expensive first

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def totals(linked: LinkedTrace) -> TraceTotals:
    """Kernels, copies and fills split by Kineto category; unlinked kernels named, never dropped."""
    dev = linked.device
    cat = dev["cat"].astype(str).str.lower()
    kernels = dev[cat.isin(KERNEL_CATS).to_numpy()]
    unlinked = kernels[~kernels["linked"].to_numpy(dtype=bool)]
    named = (unlinked.groupby(unlinked["name"].astype(str), observed=True)["dur_us"].agg(["count", "sum"])
             .sort_values("sum", ascending=False).head(UNLINKED_SHOWN))
    return TraceTotals(
        events=linked.events, kernels=len(kernels), kernel_ms=float(kernels["dur_us"].sum()) / 1e3,
        memcpy_ms=float(dev.loc[cat.isin(MEMCPY_CATS).to_numpy(), "dur_us"].sum()) / 1e3,
        memset_ms=float(dev.loc[cat.isin(MEMSET_CATS).to_numpy(), "dur_us"].sum()) / 1e3,
        device_ms=float(dev["dur_us"].sum()) / 1e3, linked_kernels=len(kernels) - len(unlinked),
        unlinked_kernels=len(unlinked),
        unlinked=[{"name": n, "count": int(r["count"]), "ms": float(r["sum"]) / 1e3} for n, r in named.iterrows()])


@dataclass(frozen=True)
class TraceReport:
    """One trace's analysis: its size, its device time and its tables, titled in display order.

    `grouping` names the table that answers "where did the time go" for this
    trace: our components when it has `ttft/` ranges, else kernel classes, or
    CPU self time per user annotation when there is no device time at all.
    """

    path: str
    events: int
    device_events: int
    device_ms: float
    grouping: str
    tables: dict[str, pd.DataFrame]
    totals: TraceTotals
    steps: list[dict]  # per step: step, name, phase, kernels, kernel_ms (the steps table's rows)
    coverage: dict  # analyzers.trace.tables.classification_coverage: what decided the kernel classes


def analyze_trace(path: str | Path, top: int = 10, max_bytes: int | None = None) -> TraceReport:
    """Every table of one trace, from one load and one link; `top` rows in the top-n tables.
    `max_bytes` caps the decompressed size read (default `analyzers.trace.read.DEFAULT_MAX_BYTES`)."""
    frame = load_trace(path, max_bytes=max_bytes)
    linked = link(frame)
    found = report_tables(linked, top)
    by_frames = False
    if not linked.labelled and len(linked.device) > 0 and modules.module_frames_present(frame):
        per_event = modules.components_from_frames(frame, linked)
        by_frames = _frames_explain(per_event, linked)
        if by_frames:
            layer_rows = modules.layer_table(per_event, linked)
            found = {MODULE_TABLE: modules.component_table(per_event, linked),
                     **({MODULE_LAYERS: layer_rows} if len(layer_rows) else {}), **found}
    step_rows = _steps(frame, linked, found)
    if linked.labelled:
        grouping = BY_COMPONENT
    elif by_frames:
        grouping = BY_MODULE
    elif CPU_ANNOTATION_TABLE in found:
        grouping = BY_CPU_ANNOTATION
    else:
        grouping = BY_CLASS
    return TraceReport(path=str(path), events=linked.events, device_events=len(linked.device),
                       device_ms=float(linked.device["dur_us"].sum()) / 1e3, grouping=grouping, tables=found,
                       totals=totals(linked), steps=step_rows, coverage=tables.classification_coverage(linked))


def _frames_explain(per_event: pd.DataFrame, linked: LinkedTrace) -> bool:
    """Module frames group the trace only where they name most of the linked time: a compiled model
    shows one GraphModule frame around everything, and a table of 99% `other` explains nothing."""
    us = linked.device["dur_us"].fillna(0.0)
    named = ~per_event["component"].isin([modules.NO_FRAME, UNLINKED])
    linked_us = float(us[(per_event["component"] != UNLINKED).to_numpy()].sum())
    return linked_us > 0 and float(us[named.to_numpy()].sum()) >= FRAMES_EXPLAIN * linked_us


def _steps(frame: pd.DataFrame, linked: LinkedTrace, found: dict[str, pd.DataFrame]) -> list[dict]:
    """Steps (ProfilerStep, vLLM and SGLang steps) and, when a trace mixes phases, the prefill steps
    broken down on their own: that is the part TTFT waits for."""
    found_steps = steps.find_steps(frame)
    if not len(found_steps) or not len(linked.device):
        return []
    per_event = steps.step_of_events(found_steps, frame, linked)
    table = steps.step_table(found_steps, per_event, linked)
    found[STEP_TABLE] = table
    prefill = steps.device_rows_in(found_steps, per_event, (steps.PREFILL,))
    if 0 < len(prefill) < len(linked.device):
        found[PREFILL_CLASSES] = tables.kernel_classes(replace(linked, device=linked.device.loc[prefill]))
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in table[["step", "name", "phase", "kernels", "kernel_ms"]].to_dict("records")]


def report_tables(linked: LinkedTrace, top: int = 10) -> dict[str, pd.DataFrame]:
    """The tables that mean something for this trace, by title, in the order they are shown."""
    has_device = len(linked.device) > 0
    out: dict[str, pd.DataFrame] = {}
    if linked.labelled:
        out["components"] = tables.components(linked)
        if has_device:
            out["top kernels per component"] = tables.top_kernels_by_component(linked, TOP_PER_COMPONENT)
    if not has_device and not linked.labelled:
        annotations = tables.annotation_self_time(linked)
        if len(annotations):
            out[CPU_ANNOTATION_TABLE] = annotations.head(top)
    if has_device:
        out["kernel classes"] = tables.kernel_classes(linked)
        out["top kernels"] = tables.top_kernels(linked, top)[["name", "kernel_class", "ms", "share", "count"]]
        annotations = tables.by_annotation(linked)
        if len(annotations):
            out["by user annotation"] = annotations.head(top)
    return out
