"""Who launched each GPU kernel, and where its time goes.

Pure functions over the frame `analyzers.trace.load.load_trace` returns. The chain
is the one the design fixes: device event -> launch call (same `correlation`,
or an `ac2g` flow when correlations are missing) -> innermost enclosing range
on the launching thread. A component's GPU time is then the sum of its
kernels' durations, never the span of a `gpu_user_annotation`, which counts
the idle gaps between kernels as work.

All loops over events are numpy; Python loops run over ranges (hundreds) or
distinct kernel names (thousands), never over events.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from analyzers.vocabulary import COMPONENTS, LABEL_PREFIX, parse_label

__all__ = ["attribute", "by_annotation", "classify_kernels", "device_events", "link_launches", "top_kernels",
           "top_kernels_by_component", "annotation_self_time"]

# Kineto category names, compared lower-case: PyTorch < 1.10 wrote "Kernel", "Memcpy", "Runtime".
DEVICE_CATS = frozenset({"kernel", "gpu_memcpy", "gpu_memset", "memcpy", "memset"})
LAUNCH_CATS = frozenset({"cuda_runtime", "cuda_driver", "runtime", "driver"})
RANGE_CATS = frozenset({"user_annotation", "cpu_op"})  # record_function ranges: ours are named ttft/...
ANNOTATION_CATS = frozenset({"user_annotation"})
FLOW_CAT = "ac2g"  # "async CPU to GPU" flows; other flows (fwdbwd) link ops, not launches

UNLINKED = "unlinked"
KERNEL_CLASSES_PATH = Path(__file__).parents[1] / "data" / "kernel_classes.json"

ATTRIBUTE_COLUMNS = ["component", "ms", "share", "count", "basis"]
CLASS_COLUMNS = ["kernel_class", "ms", "share", "count"]
TOP_COLUMNS = ["name", "kernel_class", "ms", "share", "count", "mean_us"]
ANNOTATION_COLUMNS = ["annotation", "ms", "share", "count"]


def device_events(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that are GPU activity (kernels, memcpy, memset): the time a component is charged with.

    `cuda_sync` rows are left out on purpose: they are the device *waiting*, not working.
    """
    return frame[_complete(frame) & _cat_in(frame, DEVICE_CATS)]


def link_launches(frame: pd.DataFrame) -> pd.DataFrame:
    """Device events with the launch that issued them and the ranges that enclosed that launch.

    One row per device event (never dropped), index = the event's row label in `frame`:
    - `launch` (Int64): row label of the runtime/driver call, so callers can read
      its thread, name or CPU time; <NA> when neither correlation nor flow finds it.
    - `linked` (bool): False rows are kept so that totals still add up; `attribute`
      reports their time as its own `unlinked` row instead of guessing.
    - `ttft_label` / `ttft_range`: innermost `ttft/...` range (user_annotation or
      cpu_op) on the launching thread around the launch; innermost, so a rope
      range nested in an attention range claims the rope kernels.
    - `annotation` / `annotation_range`: innermost user_annotation of any name, for
      traces recorded without our ranges (`by_annotation`).
    """
    dev = np.flatnonzero(_complete(frame) & _cat_in(frame, DEVICE_CATS))
    out = frame.iloc[dev][["name", "cat", "ts_us", "dur_us", "stream", "device", "correlation"]].copy()
    launch = _find_launches(frame, dev)
    linked = launch >= 0
    thread = _thread_keys(frame)
    ts = frame["ts_us"].to_numpy(dtype=np.float64)
    q_thread, q_ts = thread[launch[linked]], ts[launch[linked]]

    is_range = _complete(frame) & _cat_in(frame, RANGE_CATS) & _name_startswith(frame, LABEL_PREFIX)
    is_annotation = _complete(frame) & _cat_in(frame, ANNOTATION_CATS)
    name_codes, name_labels = _coded(frame["name"])
    out["launch"] = _labels(frame.index, launch)
    out["linked"] = linked
    for column, mask in (("ttft", is_range), ("annotation", is_annotation)):
        ranges = np.flatnonzero(mask)
        found = np.full(len(dev), -1, dtype=np.int64)
        found[linked] = _enclosing(frame, ranges, q_thread, q_ts)
        label = "ttft_label" if column == "ttft" else "annotation"
        out[label] = pd.Series(np.where(found >= 0, name_labels[name_codes[found]], None), index=out.index, dtype=object)
        out[f"{column}_range"] = _labels(frame.index, found)
    return out


def attribute(frame: pd.DataFrame) -> pd.DataFrame:
    """Time per component, from `ttft/<component>/...` ranges.

    Columns: `component`; `ms`; `share` (of the rows' total, so rows sum to 1);
    `count`; `basis`, which says what was measured, because the two kinds of
    trace answer different questions:
    - "kernel" (trace has device events): sum of device-event durations per
      component, `count` = device events. Events launched outside every ttft range
      go to `other`; events whose launch was not found go to `unlinked`, so the
      rows always add up to the total device time.
    - "cpu_self" (CPU-only trace): self time of each ttft range (its duration
      minus the ttft ranges nested in it on the same thread, so nothing is
      counted twice), `count` = ranges.
    Rows follow the forward-pass order of COMPONENTS; components with no time are absent.
    """
    dev = np.flatnonzero(_complete(frame) & _cat_in(frame, DEVICE_CATS))
    if len(dev):
        linked = link_launches(frame)
        components = _components_of(linked["ttft_label"].to_numpy(dtype=object))
        components[~linked["linked"].to_numpy()] = UNLINKED
        return _summarise(components, linked["dur_us"].to_numpy(dtype=np.float64), "component", _ORDER, "kernel")
    ranges = np.flatnonzero(_complete(frame) & _cat_in(frame, RANGE_CATS) & _name_startswith(frame, LABEL_PREFIX))
    self_us = _self_time(frame, ranges)
    components = _components_of(frame["name"].to_numpy(dtype=object)[ranges])
    return _summarise(components, self_us, "component", _ORDER, "cpu_self")


def classify_kernels(frame: pd.DataFrame) -> pd.DataFrame:
    """Device time per kernel class, for traces recorded without our ranges.

    Columns: `kernel_class` (from analyzers/data/kernel_classes.json; every event
    gets exactly one, so `ms` sums to the total device time), `ms`, `share`,
    `count` (device events). Sorted by `ms`, largest first, because the
    question is where the time went.
    """
    dev = device_events(frame)
    classes = _kernel_classes(dev)
    table = _summarise(classes, dev["dur_us"].to_numpy(dtype=np.float64), "kernel_class", None, None)
    return table[CLASS_COLUMNS]


def top_kernels(frame: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The `n` kernel names with the most device time: what to look at first.

    Columns: `name`, `kernel_class`, `ms` (sum over launches), `share` (of all
    device time, so a reader sees how much the top n leave out), `count`,
    `mean_us` (per launch: one slow kernel and many small ones call for different fixes).
    """
    dev = device_events(frame)
    table = pd.DataFrame({
        "name": dev["name"].astype(str).to_numpy(dtype=object),
        "kernel_class": _kernel_classes(dev),
        "dur_us": dev["dur_us"].to_numpy(dtype=np.float64),
    })
    total_us = float(table["dur_us"].sum())
    grouped = table.groupby(["name", "kernel_class"], sort=False)["dur_us"].agg(["sum", "count"]).reset_index()
    grouped = grouped.sort_values("sum", ascending=False, kind="stable").head(n)
    return pd.DataFrame({
        "name": grouped["name"].to_numpy(),
        "kernel_class": grouped["kernel_class"].to_numpy(),
        "ms": grouped["sum"].to_numpy() / 1e3,
        "share": grouped["sum"].to_numpy() / total_us if total_us > 0 else 0.0,
        "count": grouped["count"].to_numpy(dtype=np.int64),
        "mean_us": grouped["sum"].to_numpy() / grouped["count"].to_numpy(),
    }, columns=TOP_COLUMNS)


def top_kernels_by_component(frame: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The `n` kernels with the most device time inside each component, `unlinked` included.

    A component's kernel time says how much; its top kernels say which kernel
    to look at (and the unlinked rows list the kernels whose launch was lost).
    Columns: `component`, `name`, `ms`, `count`, `share_of_component`.
    """
    linked = link_launches(frame)
    components = _components_of(linked["ttft_label"].to_numpy(dtype=object))
    components[~linked["linked"].to_numpy()] = UNLINKED
    table = pd.DataFrame({"component": components, "name": linked["name"].astype(str).to_numpy(dtype=object),
                          "dur_us": linked["dur_us"].to_numpy(dtype=np.float64)})
    grouped = table.groupby(["component", "name"], sort=False)["dur_us"].agg(["sum", "count"]).reset_index()
    totals = grouped.groupby("component")["sum"].transform("sum")
    grouped["share_of_component"] = np.where(totals > 0, grouped["sum"] / totals, 0.0)
    order = {c: i for i, c in enumerate(_ORDER)}
    grouped["_order"] = grouped["component"].map(order).fillna(len(order))
    grouped = grouped.sort_values(["_order", "sum"], ascending=[True, False], kind="stable")
    top = grouped.groupby("component", sort=False).head(n)
    return pd.DataFrame({"component": top["component"].to_numpy(), "name": top["name"].to_numpy(),
                         "ms": top["sum"].to_numpy() / 1e3, "count": top["count"].to_numpy(dtype=np.int64),
                         "share_of_component": top["share_of_component"].to_numpy()})


def by_annotation(frame: pd.DataFrame) -> pd.DataFrame:
    """Device time per innermost enclosing user_annotation of the launch (any name).

    The second grouping for traces without ttft ranges: whatever the user wrapped
    in `record_function` becomes a row. Columns: `annotation`, `ms`, `share`,
    `count`. Launches outside every annotation are "(no annotation)", device
    events with no launch "(unlinked)", so the rows sum to the total device time.
    """
    linked = link_launches(frame)
    names = linked["annotation"].to_numpy(dtype=object).copy()
    names[pd.isna(names)] = "(no annotation)"
    names[~linked["linked"].to_numpy()] = "(unlinked)"
    table = _summarise(names, linked["dur_us"].to_numpy(dtype=np.float64), "annotation", None, None)
    return table[ANNOTATION_COLUMNS]


def annotation_self_time(frame: pd.DataFrame) -> pd.DataFrame:
    """CPU self time per user_annotation name, for traces with neither device events nor ttft ranges.

    A CPU-only trace of someone else's code still says where the host time
    went, by whatever they wrapped in record_function. Columns: `annotation`,
    `ms` (self time: nested annotations on the same thread subtracted), `share`, `count`.
    """
    ranges = np.flatnonzero(_complete(frame) & _cat_in(frame, ANNOTATION_CATS))
    self_us = _self_time(frame, ranges)
    names = frame["name"].astype(str).to_numpy(dtype=object)[ranges]
    return _summarise(names, self_us, "annotation", None, None)[ANNOTATION_COLUMNS]


# ---------------------------------------------------------------- internals

_ORDER = (*COMPONENTS, UNLINKED)


def _summarise(keys: np.ndarray, us: np.ndarray, key_column: str, order: tuple[str, ...] | None,
               basis: str | None) -> pd.DataFrame:
    """Sum `us` per key into the shared ms/share/count layout."""
    columns = [key_column, "ms", "share", "count"] + (["basis"] if basis else [])
    if len(keys) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object if c in (key_column, "basis") else float) for c in columns})
    inverse, uniques = pd.factorize(keys)  # hashing, not sorting, the per-event keys
    uniques = np.asarray(uniques, dtype=object)
    sums = np.bincount(inverse, weights=us, minlength=len(uniques))
    counts = np.bincount(inverse, minlength=len(uniques))
    if order is not None:
        rank = {name: i for i, name in enumerate(order)}
        sequence = sorted(range(len(uniques)), key=lambda i: (rank.get(uniques[i], len(order)), uniques[i]))
    else:
        sequence = sorted(range(len(uniques)), key=lambda i: (-sums[i], uniques[i]))
    total = float(sums.sum())
    table = pd.DataFrame({
        key_column: [str(uniques[i]) for i in sequence],
        "ms": sums[sequence] / 1e3,
        "share": sums[sequence] / total if total > 0 else np.zeros(len(sequence)),
        "count": counts[sequence].astype(np.int64),
    })
    if basis:
        table["basis"] = basis
    return table[columns]


def _components_of(labels: np.ndarray) -> np.ndarray:
    """`ttft/<component>/...` -> component; no range or an unknown component -> `other`."""
    codes, uniques = pd.factorize(labels)  # parse each distinct label once
    parsed = [parse_label(str(label)) for label in uniques]
    components = np.array([key.component if key else "other" for key in parsed] + ["other"], dtype=object)
    return components[codes]  # code -1 (no range) picks the trailing "other"


def _complete(frame: pd.DataFrame) -> np.ndarray:
    return _category_mask(frame["ph"], lambda value: value == "X")


def _cat_in(frame: pd.DataFrame, wanted: frozenset[str]) -> np.ndarray:
    return _category_mask(frame["cat"], lambda value: value.lower() in wanted)


def _name_startswith(frame: pd.DataFrame, prefix: str) -> np.ndarray:
    return _category_mask(frame["name"], lambda value: value.startswith(prefix))


def _category_mask(series: pd.Series, keep) -> np.ndarray:
    """Evaluate `keep` once per distinct value rather than once per event."""
    cat = series.array if isinstance(series.dtype, pd.CategoricalDtype) else pd.Categorical(series)
    per_category = np.array([keep(str(value)) for value in cat.categories] + [False], dtype=bool)
    return per_category[np.asarray(cat.codes)]  # code -1 (missing) picks the trailing False


def _thread_keys(frame: pd.DataFrame) -> np.ndarray:
    """One int64 per (pid, tid): ranges and launches must sit on the same thread."""
    pid, tid = _coded(frame["pid"])[0], _coded(frame["tid"])[0]
    return pid * (int(tid.max(initial=0)) + 2) + tid


def _coded(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, labels) with labels as str objects; a missing value gets code len(labels)-1 and label ""."""
    cat = series.array if isinstance(series.dtype, pd.CategoricalDtype) else pd.Categorical(series.astype(str))
    labels = np.array([str(c) for c in cat.categories] + [""], dtype=object)
    codes = np.asarray(cat.codes, dtype=np.int64)
    return np.where(codes < 0, len(labels) - 1, codes), labels


def _labels(index: pd.Index, positions: np.ndarray) -> pd.arrays.IntegerArray | np.ndarray:
    """Row positions (-1 = none) -> row labels of `index`: nullable ints, or objects for other indexes."""
    missing = positions < 0
    if isinstance(index, pd.RangeIndex):
        values = index.start + positions * index.step
    elif pd.api.types.is_integer_dtype(index.dtype):
        values = np.asarray(index, dtype=np.int64)[np.where(missing, 0, positions)]
    else:
        return np.where(missing, None, np.asarray(index, dtype=object)[np.where(missing, 0, positions)])
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing)


def _find_launches(frame: pd.DataFrame, dev: np.ndarray) -> np.ndarray:
    """Position of each device event's launch call, or -1."""
    complete = _complete(frame)
    corr_col = frame["correlation"]
    corr_missing = corr_col.isna().to_numpy()
    corr = corr_col.to_numpy(dtype=np.int64, na_value=0)  # exact ids; missing ones are masked out
    # Runtime calls before driver calls, so a driver call sharing a runtime call's id never wins.
    runtime = np.flatnonzero(complete & _cat_in(frame, frozenset({"cuda_runtime", "runtime"})) & ~corr_missing)
    driver = np.flatnonzero(complete & _cat_in(frame, LAUNCH_CATS - {"cuda_runtime", "runtime"}) & ~corr_missing)
    candidates = np.concatenate([runtime, driver])
    lookup = pd.Index(corr[candidates])
    if not lookup.is_unique:  # merged multi-process traces can reuse ids; first one wins
        keep = ~lookup.duplicated(keep="first")
        candidates, lookup = candidates[keep], lookup[keep]
    launch = np.full(len(dev), -1, dtype=np.int64)
    has_corr = ~corr_missing[dev]
    hit = lookup.get_indexer(corr[dev[has_corr]])
    launch[has_corr] = np.where(hit >= 0, candidates[np.maximum(hit, 0)], -1)
    if (launch < 0).any():
        missing = launch < 0
        launch[missing] = _launches_by_flow(frame, dev[missing])
    return launch


def _launches_by_flow(frame: pd.DataFrame, dev: np.ndarray) -> np.ndarray:
    """Fallback through `ac2g` flows: Kineto writes the flow's end ("f") at the
    device event's track and start time, and its start ("s") at the launch's."""
    out = np.full(len(dev), -1, dtype=np.int64)
    flow = _cat_in(frame, frozenset({FLOW_CAT})) & frame["flow_id"].notna().to_numpy()
    if not flow.any():
        return out
    thread = _thread_keys(frame)
    ts = frame["ts_us"].to_numpy(dtype=np.float64)
    flow_id = frame["flow_id"].to_numpy(dtype=np.int64, na_value=0)  # only read where `flow` holds

    def keyed(mask: np.ndarray) -> tuple[np.ndarray, list]:
        rows = np.flatnonzero(mask)
        return rows, list(zip(thread[rows].tolist(), ts[rows].tolist(), strict=True))

    f_rows, f_keys = keyed(flow & _category_mask(frame["ph"], lambda v: v == "f"))
    s_rows, s_keys = keyed(flow & _category_mask(frame["ph"], lambda v: v == "s"))
    l_rows, l_keys = keyed(_complete(frame) & _cat_in(frame, LAUNCH_CATS))
    ends = dict(zip(f_keys, flow_id[f_rows].tolist(), strict=True))
    starts = dict(zip(flow_id[s_rows].tolist(), s_keys, strict=True))
    at = dict(zip(l_keys, l_rows.tolist(), strict=True))
    for j, key in enumerate(zip(thread[dev].tolist(), ts[dev].tolist(), strict=True)):
        source = starts.get(ends.get(key))
        if source is not None:
            out[j] = at.get(source, -1)
    return out


def _nest(frame: pd.DataFrame, ranges: np.ndarray):
    """Sort ranges by (thread, start, longest first) and give each its parent.

    Returns (order, thread, start, end, parent), all in sorted order; parent is the
    innermost range that is still open when this one starts on the same thread, or -1.
    """
    thread = _thread_keys(frame)[ranges]
    start = frame["ts_us"].to_numpy(dtype=np.float64)[ranges]
    end = start + np.nan_to_num(frame["dur_us"].to_numpy(dtype=np.float64)[ranges])
    order = np.lexsort((-end, start, thread))
    thread, start, end = thread[order], start[order], end[order]
    parent = np.full(len(order), -1, dtype=np.int64)
    stack: list[int] = []
    previous = None
    ends = end.tolist()
    for i, (th, st) in enumerate(zip(thread.tolist(), start.tolist(), strict=True)):
        if th != previous:
            stack.clear()
            previous = th
        while stack and ends[stack[-1]] <= st:  # closed by now: a sibling, not a parent
            stack.pop()
        if stack:
            parent[i] = stack[-1]
        stack.append(i)
    return order, thread, start, end, parent


def _enclosing(frame: pd.DataFrame, ranges: np.ndarray, q_thread: np.ndarray, q_ts: np.ndarray) -> np.ndarray:
    """Frame position of the innermost range in `ranges` with start <= t <= end on the query's thread, or -1."""
    found = np.full(len(q_ts), -1, dtype=np.int64)
    if len(ranges) == 0 or len(q_ts) == 0:
        return found
    order, thread, start, end, parent = _nest(frame, ranges)
    for th in np.unique(thread):
        lo, hi = np.searchsorted(thread, th, "left"), np.searchsorted(thread, th, "right")
        queries = np.flatnonzero(q_thread == th)
        # The last range to start at or before t; if it has already ended, one of its ancestors may not have.
        found[queries] = lo + np.searchsorted(start[lo:hi], q_ts[queries], "right") - 1
        found[queries[found[queries] < lo]] = -1
    t = q_ts
    while True:
        ended = (found >= 0) & (end[np.maximum(found, 0)] < t)
        if not ended.any():
            break
        found[ended] = parent[found[ended]]
    return np.where(found >= 0, ranges[order[np.maximum(found, 0)]], -1)


def _self_time(frame: pd.DataFrame, ranges: np.ndarray) -> np.ndarray:
    """Duration of each range minus the part of its direct children inside it (same order as `ranges`)."""
    if len(ranges) == 0:
        return np.zeros(0)
    order, _thread, start, end, parent = _nest(frame, ranges)
    dur = np.nan_to_num(frame["dur_us"].to_numpy(dtype=np.float64)[ranges][order])
    child = np.flatnonzero(parent >= 0)
    up = parent[child]
    # Durations, not end - start: at epoch-µs timestamps (~1.7e15) float64 steps are 0.25 µs.
    # A child that overruns its parent (integer-µs rounding) is clipped, not subtracted whole.
    overlap = np.where(end[child] <= end[up], dur[child], end[up] - start[child])
    inside = np.bincount(up, weights=overlap, minlength=len(order))
    out = np.empty(len(order))
    out[order] = np.maximum(dur - inside, 0.0)
    return out


@lru_cache(maxsize=1)
def _class_table() -> tuple[tuple[str, frozenset[str], re.Pattern | None], ...]:
    try:
        doc = json.loads(KERNEL_CLASSES_PATH.read_text())
        rows = []
        for entry in doc["classes"]:
            patterns = entry.get("patterns", [])
            regex = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None
            rows.append((entry["class"], frozenset(c.lower() for c in entry.get("categories", [])), regex))
    except (OSError, ValueError, KeyError, TypeError, re.error) as exc:
        raise ValueError(f"{KERNEL_CLASSES_PATH} is unreadable ({exc}); restore it from the package.") from exc
    return tuple(rows)


def _kernel_classes(dev: pd.DataFrame) -> np.ndarray:
    """Class of each device event; the rules run once per distinct (name, category)."""
    name_codes, name_labels = _coded(dev["name"])
    cat_codes, cat_labels = _coded(dev["cat"])
    if len(name_codes) == 0:
        return np.zeros(0, dtype=object)
    width = len(cat_labels)
    keys, inverse = np.unique(name_codes * width + cat_codes, return_inverse=True)
    table = _class_table()
    classes = []
    for key in keys.tolist():
        name, cat = name_labels[key // width], cat_labels[key % width].lower()
        classes.append(next((cls for cls, categories, regex in table
                             if cat in categories or (regex is not None and regex.search(name))), "other"))
    return np.array(classes, dtype=object)[inverse.ravel()]
