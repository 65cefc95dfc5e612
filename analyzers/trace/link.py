"""Who launched each GPU kernel: every device event linked once, for every table.

The chain is the one the design fixes: device event -> launch call (same
`correlation`, or an `ac2g` flow when correlations are missing) -> innermost
enclosing range on the launching thread. A component's GPU time is then the
sum of its kernels' durations, never the span of a `gpu_user_annotation`,
which counts the idle gaps between kernels as work.

`link` does all of that in one pass and returns a `LinkedTrace`; the tables
(`analyzers.trace.tables`) are plain group-bys over it, so none of them walks
the trace again. All loops over events are numpy; Python loops run over ranges
(hundreds) or distinct kernel names (thousands), never over events.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzers.trace.classify import is_known_op, kernel_classes, op_classes
from analyzers.trace.kinds import (
    ANNOTATION_CATS,
    DEVICE_CATS,
    DRIVER_CATS,
    FLOW_CAT,
    LAUNCH_CATS,
    RANGE_CATS,
    RUNTIME_CATS,
    cat_in,
    category_mask,
    coded,
    complete,
    name_startswith,
    row_labels,
    thread_keys,
)
from analyzers.trace.nesting import Nesting, innermost, nest, self_time
from analyzers.vocabulary import LABEL_PREFIX, parse_label

__all__ = ["DEVICE_COLUMNS", "UNLINKED", "LinkedTrace", "link"]

UNLINKED = "unlinked"
NO_COMPONENT = "other"  # launched outside every ttft range, or a ttft/ name that is not a component
FRAME_COLUMNS = ["name", "cat", "ts_us", "dur_us", "stream", "device", "correlation"]  # copied from the trace
DEVICE_COLUMNS = [*FRAME_COLUMNS, "launch", "linked", "ttft_label", "ttft_range", "annotation", "annotation_range",
                  "component", "kernel_class", "op", "class_basis"]
OP_CATS = frozenset({"cpu_op"})  # ops; user_annotations count too when they name a known op (nccl:all_reduce)
GRAPH_LAUNCH = "GraphLaunch"  # cudaGraphLaunch/hipGraphLaunch: the op around a replay did not choose its kernels


@dataclass(frozen=True)
class LinkedTrace:
    """Everything the tables read, from one pass over the trace.

    - `events`: rows in the trace; `labelled`: some event is named `ttft/...`, so
      the trace is grouped by our components.
    - `device`: one row per device event (kernel, memcpy, memset; never dropped),
      index = its row label in the loaded frame, columns `DEVICE_COLUMNS`:
      `launch` (Int64): row label of the runtime/driver call, <NA> when neither
      correlation nor flow finds it; `linked` (bool): False rows are kept so that
      totals still add up, and their `component` is `unlinked` rather than a guess;
      `ttft_label` / `ttft_range`: innermost `ttft/...` range (user_annotation or
      cpu_op) on the launching thread around the launch; innermost, so a rope range
      nested in an attention range claims the rope kernels; `annotation` /
      `annotation_range`: innermost user_annotation of any name, for traces recorded
      without our ranges; `component`; `op`: innermost CPU op around the launch on the
      launching thread (cpu_op, or a user_annotation naming a known op), None when unlinked,
      outside every op, or launched by a graph replay; `kernel_class` (one of
      `analyzers.trace.classify.KERNEL_CLASSES`, from that op's rule, else the kernel's name)
      and `class_basis` (what decided it: "op", "name", "category" or "none").
    - `ttft_ranges`: the `ttft/` ranges with `name`, `component` and `self_us`
      (duration minus the ttft ranges nested in it on the same thread), which is
      what a CPU-only trace can say.
    - `annotations`: every user_annotation with `name` and `self_us` (nested
      annotations subtracted), for CPU-only traces of someone else's code.
    """

    events: int
    labelled: bool
    device: pd.DataFrame
    ttft_ranges: pd.DataFrame
    annotations: pd.DataFrame


def link(frame: pd.DataFrame) -> LinkedTrace:
    """Link the frame `analyzers.trace.load.load_trace` returns, once."""
    cols = _Columns.of(frame)
    ours = name_startswith(frame, LABEL_PREFIX)
    ttft = _Ranges.of(cols, cols.complete & cat_in(frame, RANGE_CATS) & ours)
    notes = _Ranges.of(cols, cols.complete & cat_in(frame, ANNOTATION_CATS))
    known_op = cat_in(frame, ANNOTATION_CATS) & category_mask(frame["name"], is_known_op)
    ops = _Ranges.of(cols, cols.complete & (cat_in(frame, OP_CATS) | known_op) & ~ours)
    dev = np.flatnonzero(cols.complete & cat_in(frame, DEVICE_CATS))
    ttft_names = cols.names(ttft.rows)
    return LinkedTrace(
        events=len(frame),
        labelled=bool(ours.any()),
        device=_device_frame(cols, dev, _find_launches(cols, dev), ttft, notes, ops),
        ttft_ranges=pd.DataFrame({"name": ttft_names, "component": _components_of(ttft_names),
                                  "self_us": self_time(ttft.nesting)}, index=frame.index[ttft.rows]),
        annotations=pd.DataFrame({"name": cols.names(notes.rows), "self_us": self_time(notes.nesting)},
                                 index=frame.index[notes.rows]),
    )


@dataclass(frozen=True)
class _Columns:
    """The frame's columns as numpy arrays, read once for every step of the link."""

    frame: pd.DataFrame
    complete: np.ndarray
    thread: np.ndarray
    ts: np.ndarray
    dur: np.ndarray
    name_codes: np.ndarray
    name_labels: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Columns:
        name_codes, name_labels = coded(frame["name"])
        return cls(frame, complete(frame), thread_keys(frame), frame["ts_us"].to_numpy(dtype=np.float64),
                   frame["dur_us"].to_numpy(dtype=np.float64), name_codes, name_labels)

    def names(self, rows: np.ndarray) -> np.ndarray:
        return self.name_labels[self.name_codes[rows]]


@dataclass(frozen=True)
class _Ranges:
    rows: np.ndarray  # frame positions, in frame order
    nesting: Nesting

    @classmethod
    def of(cls, cols: _Columns, mask: np.ndarray) -> _Ranges:
        rows = np.flatnonzero(mask)
        return cls(rows, nest(cols.thread[rows], cols.ts[rows], cols.dur[rows]))


def _device_frame(cols: _Columns, dev: np.ndarray, launch: np.ndarray, ttft: _Ranges, notes: _Ranges,
                  ops: _Ranges) -> pd.DataFrame:
    index = cols.frame.index
    out = cols.frame.iloc[dev][FRAME_COLUMNS].copy()
    linked = launch >= 0
    out["launch"] = row_labels(index, launch)
    out["linked"] = linked
    for label, range_column, ranges in (("ttft_label", "ttft_range", ttft), ("annotation", "annotation_range", notes)):
        found = _enclosing(cols, ranges, launch)
        out[label] = pd.Series(np.where(found >= 0, cols.names(found), None), index=out.index, dtype=object)
        out[range_column] = row_labels(index, found)
    components = _components_of(out["ttft_label"].to_numpy(dtype=object))
    components[~linked] = UNLINKED
    out["component"] = components
    op = _launching_op(cols, ops, launch)
    out["op"] = pd.Series(np.where(op >= 0, cols.names(ops.rows[np.maximum(op, 0)]), None) if len(ops.rows)
                          else np.full(len(dev), None, dtype=object), index=out.index, dtype=object)
    op_class, op_weak = op_classes(cols.names(ops.rows), ops.nesting)
    has_op = op >= 0
    event_class = np.full(len(dev), None, dtype=object)
    event_class[has_op] = op_class[op[has_op]]
    event_weak = np.zeros(len(dev), dtype=bool)
    event_weak[has_op] = op_weak[op[has_op]]
    out["kernel_class"], out["class_basis"] = kernel_classes(out["name"], out["cat"], event_class, event_weak)
    return out[DEVICE_COLUMNS]


def _launching_op(cols: _Columns, ops: _Ranges, launch: np.ndarray) -> np.ndarray:
    """Index into `ops.rows` of the innermost op around each launch, or -1 (no launch, no op, a graph replay)."""
    graph = category_mask(cols.frame["name"], lambda name: GRAPH_LAUNCH in name)
    direct = np.where((launch >= 0) & ~graph[np.maximum(launch, 0)], launch, -1)
    return _innermost_range(cols, ops, direct)


def _enclosing(cols: _Columns, ranges: _Ranges, launch: np.ndarray) -> np.ndarray:
    """Frame position of the innermost range around each launch on its thread; -1 without one or a launch."""
    hit = _innermost_range(cols, ranges, launch)
    return np.where(hit >= 0, ranges.rows[np.maximum(hit, 0)], -1) if len(ranges.rows) else hit


def _innermost_range(cols: _Columns, ranges: _Ranges, launch: np.ndarray) -> np.ndarray:
    """Index into `ranges.rows` of the innermost range around each launch on its thread, or -1."""
    found = np.full(len(launch), -1, dtype=np.int64)
    if len(ranges.rows) == 0:
        return found
    linked = launch >= 0
    found[linked] = innermost(ranges.nesting, cols.thread[launch[linked]], cols.ts[launch[linked]])
    return found


def _components_of(labels: np.ndarray) -> np.ndarray:
    """`ttft/<component>/...` -> component; no range or an unknown component -> `other`."""
    codes, uniques = pd.factorize(labels)  # parse each distinct label once
    parsed = [parse_label(str(label)) for label in uniques]
    components = np.array([key.component if key else NO_COMPONENT for key in parsed] + [NO_COMPONENT], dtype=object)
    return components[codes]  # code -1 (no range) picks the trailing "other"


def _find_launches(cols: _Columns, dev: np.ndarray) -> np.ndarray:
    """Position of each device event's launch call, or -1."""
    frame = cols.frame
    corr_col = frame["correlation"]
    corr_missing = corr_col.isna().to_numpy()
    corr = corr_col.to_numpy(dtype=np.int64, na_value=0)  # exact ids; missing ones are masked out
    # Runtime calls before driver calls, so a driver call sharing a runtime call's id never wins.
    runtime = np.flatnonzero(cols.complete & cat_in(frame, RUNTIME_CATS) & ~corr_missing)
    driver = np.flatnonzero(cols.complete & cat_in(frame, DRIVER_CATS) & ~corr_missing)
    candidates = np.concatenate([runtime, driver])
    lookup = pd.Index(corr[candidates])
    if not lookup.is_unique:  # merged multi-process traces can reuse ids; first one wins
        keep = ~lookup.duplicated(keep="first")
        candidates, lookup = candidates[keep], lookup[keep]
    launch = np.full(len(dev), -1, dtype=np.int64)
    if len(candidates):  # none: a device-only trace (or one cut from a larger one), nothing to look up
        has_corr = ~corr_missing[dev]
        hit = lookup.get_indexer(corr[dev[has_corr]])
        launch[has_corr] = np.where(hit >= 0, candidates[np.maximum(hit, 0)], -1)
    if (launch < 0).any():
        missing = launch < 0
        launch[missing] = _launches_by_flow(cols, dev[missing])
    return launch


def _launches_by_flow(cols: _Columns, dev: np.ndarray) -> np.ndarray:
    """Fallback through `ac2g` flows: Kineto writes the flow's end ("f") at the
    device event's track and start time, and its start ("s") at the launch's."""
    frame = cols.frame
    out = np.full(len(dev), -1, dtype=np.int64)
    flow = cat_in(frame, frozenset({FLOW_CAT})) & frame["flow_id"].notna().to_numpy()
    if not flow.any():
        return out
    thread, ts = cols.thread, cols.ts
    flow_id = frame["flow_id"].to_numpy(dtype=np.int64, na_value=0)  # only read where `flow` holds

    def keyed(mask: np.ndarray) -> tuple[np.ndarray, list]:
        rows = np.flatnonzero(mask)
        return rows, list(zip(thread[rows].tolist(), ts[rows].tolist(), strict=True))

    f_rows, f_keys = keyed(flow & category_mask(frame["ph"], lambda v: v == "f"))
    s_rows, s_keys = keyed(flow & category_mask(frame["ph"], lambda v: v == "s"))
    l_rows, l_keys = keyed(cols.complete & cat_in(frame, LAUNCH_CATS))
    ends = dict(zip(f_keys, flow_id[f_rows].tolist(), strict=True))
    starts = dict(zip(flow_id[s_rows].tolist(), s_keys, strict=True))
    at = dict(zip(l_keys, l_rows.tolist(), strict=True))
    for j, key in enumerate(zip(thread[dev].tolist(), ts[dev].tolist(), strict=True)):
        source = starts.get(ends.get(key))
        if source is not None:
            out[j] = at.get(source, -1)
    return out
