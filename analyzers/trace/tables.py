"""The tables of a trace analysis, each a pure function of one `LinkedTrace`.

Nothing here reads the trace or links anything: `analyzers.trace.link.link`
did that once, so a report of six tables costs one link and six group-bys.
Most tables share one layout (key, `ms`, `share`, `count`) whose rows sum to
the whole, so a reader can always see what a table leaves out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analyzers.trace.link import UNLINKED, LinkedTrace
from analyzers.vocabulary import COMPONENTS

__all__ = ["ANNOTATION_COLUMNS", "ATTRIBUTE_COLUMNS", "CLASS_COLUMNS", "COVERAGE_KEYS", "NO_ANNOTATION", "TOP_COLUMNS",
           "UNLINKED_ANNOTATION", "annotation_self_time", "by_annotation", "classification_coverage", "components",
           "kernel_classes", "top_kernels", "top_kernels_by_component"]

ATTRIBUTE_COLUMNS = ["component", "ms", "share", "count", "basis"]
CLASS_COLUMNS = ["kernel_class", "ms", "share", "count"]
TOP_COLUMNS = ["name", "kernel_class", "ms", "share", "count", "mean_us"]
ANNOTATION_COLUMNS = ["annotation", "ms", "share", "count"]
NO_ANNOTATION, UNLINKED_ANNOTATION = "(no annotation)", "(unlinked)"
# How device time got its class: by the launching op, by the kernel's name (or Kineto category, which
# is as mechanical), or not at all (fell to `other`); the keys of `classification_coverage`.
COVERAGE_KEYS = ("op", "name", "none")
COVERAGE_OF_BASIS = {"op": "op", "name": "name", "category": "name", "none": "none"}

# Forward-pass order, so a component table reads like the maths; what no range claims comes last.
COMPONENT_ORDER = (*COMPONENTS, UNLINKED)


def components(linked: LinkedTrace) -> pd.DataFrame:
    """Time per component, from `ttft/<component>/...` ranges.

    Columns `ATTRIBUTE_COLUMNS`; `share` is of the rows' total, so rows sum to 1.
    `basis` says what was measured, because the two kinds of trace answer
    different questions:
    - "kernel" (trace has device events): sum of device-event durations per
      component, `count` = device events. Events launched outside every ttft range
      go to `other`; events whose launch was not found go to `unlinked`, so the
      rows always add up to the total device time.
    - "cpu_self" (CPU-only trace): self time of each ttft range (nested ttft
      ranges on the same thread subtracted, so nothing is counted twice), `count` = ranges.
    Rows follow the forward-pass order of COMPONENTS; components with no time are absent.
    """
    dev = linked.device
    if len(dev):
        return _summarise(dev["component"].to_numpy(dtype=object), _device_us(linked), "component",
                         COMPONENT_ORDER, "kernel")
    ranges = linked.ttft_ranges
    return _summarise(ranges["component"].to_numpy(dtype=object), ranges["self_us"].to_numpy(dtype=np.float64),
                     "component", COMPONENT_ORDER, "cpu_self")


def kernel_classes(linked: LinkedTrace) -> pd.DataFrame:
    """Device time per kernel class, for traces recorded without our ranges.

    Columns `CLASS_COLUMNS`; every device event has exactly one class (one of
    `analyzers.trace.classify.KERNEL_CLASSES`, from its launching op, else its name),
    so `ms` sums to the total device time; `classification_coverage` says how much of
    it each way decided. Largest first, because the question is where the time went.
    """
    classes = linked.device["kernel_class"].to_numpy(dtype=object)
    return _summarise(classes, _device_us(linked), "kernel_class", None, None)[CLASS_COLUMNS]


def classification_coverage(linked: LinkedTrace) -> dict:
    """How much device time each way of classifying decided, so a class table says how far to trust it.

    `{"device_ms": total, "op": {"ms", "share"}, "name": {...}, "none": {...}}`: "op" is time
    classed by the launching op's rule, "name" by the kernel's name or its Kineto category
    (memcpy/memset), "none" fell to `other` with no rule at all. Shares are of `device_ms`
    (0.0 when there is no device time), so the three sum to 1 on any trace with device time.
    """
    basis = linked.device["class_basis"].map(COVERAGE_OF_BASIS).to_numpy(dtype=object)
    us = _device_us(linked)
    total = float(us.sum())
    out: dict = {"device_ms": total / 1e3}
    for key in COVERAGE_KEYS:
        part = float(us[basis == key].sum())
        out[key] = {"ms": part / 1e3, "share": part / total if total > 0 else 0.0}
    return out


def top_kernels(linked: LinkedTrace, n: int = 10) -> pd.DataFrame:
    """The `n` kernel names with the most device time: what to look at first.

    Columns `TOP_COLUMNS`: `ms` (sum over launches), `share` (of all device time,
    so a reader sees how much the top n leave out), `mean_us` (per launch: one
    slow kernel and many small ones call for different fixes).
    """
    dev = linked.device
    table = pd.DataFrame({
        "name": dev["name"].astype(str).to_numpy(dtype=object),
        "kernel_class": dev["kernel_class"].to_numpy(dtype=object),
        "dur_us": _device_us(linked),
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


def top_kernels_by_component(linked: LinkedTrace, n: int = 3) -> pd.DataFrame:
    """The `n` kernels with the most device time inside each component, `unlinked` included.

    A component's kernel time says how much; its top kernels say which kernel
    to look at (and the unlinked rows list the kernels whose launch was lost).
    Columns: `component`, `name`, `ms`, `count`, `share_of_component`.
    """
    dev = linked.device
    table = pd.DataFrame({"component": dev["component"].to_numpy(dtype=object),
                          "name": dev["name"].astype(str).to_numpy(dtype=object), "dur_us": _device_us(linked)})
    grouped = table.groupby(["component", "name"], sort=False)["dur_us"].agg(["sum", "count"]).reset_index()
    totals = grouped.groupby("component")["sum"].transform("sum")
    grouped["share_of_component"] = np.where(totals > 0, grouped["sum"] / totals, 0.0)
    order = {c: i for i, c in enumerate(COMPONENT_ORDER)}
    grouped["_order"] = grouped["component"].map(order).fillna(len(order))
    grouped = grouped.sort_values(["_order", "sum"], ascending=[True, False], kind="stable")
    top = grouped.groupby("component", sort=False).head(n)
    return pd.DataFrame({"component": top["component"].to_numpy(), "name": top["name"].to_numpy(),
                         "ms": top["sum"].to_numpy() / 1e3, "count": top["count"].to_numpy(dtype=np.int64),
                         "share_of_component": top["share_of_component"].to_numpy()})


def by_annotation(linked: LinkedTrace) -> pd.DataFrame:
    """Device time per innermost enclosing user_annotation of the launch (any name).

    The second grouping for traces without ttft ranges: whatever the user wrapped
    in `record_function` becomes a row. Columns `ANNOTATION_COLUMNS`. Launches
    outside every annotation are NO_ANNOTATION, device events with no launch
    UNLINKED_ANNOTATION, so the rows sum to the total device time.
    """
    dev = linked.device
    names = dev["annotation"].to_numpy(dtype=object).copy()
    names[pd.isna(names)] = NO_ANNOTATION
    names[~dev["linked"].to_numpy(dtype=bool)] = UNLINKED_ANNOTATION
    return _summarise(names, _device_us(linked), "annotation", None, None)[ANNOTATION_COLUMNS]


def annotation_self_time(linked: LinkedTrace) -> pd.DataFrame:
    """CPU self time per user_annotation name, for traces with neither device events nor ttft ranges.

    A CPU-only trace of someone else's code still says where the host time
    went, by whatever they wrapped in record_function. Columns `ANNOTATION_COLUMNS`,
    `ms` being self time (nested annotations on the same thread subtracted).
    """
    notes = linked.annotations
    return _summarise(notes["name"].to_numpy(dtype=object), notes["self_us"].to_numpy(dtype=np.float64),
                     "annotation", None, None)[ANNOTATION_COLUMNS]


def _summarise(keys: np.ndarray, us: np.ndarray, key_column: str, order: tuple[str, ...] | None,
              basis: str | None) -> pd.DataFrame:
    """Sum `us` per key into the shared key/ms/share/count layout.

    Rows follow `order` when given (unknown keys last, by name), else the most time first.
    """
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


def _device_us(linked: LinkedTrace) -> np.ndarray:
    return linked.device["dur_us"].to_numpy(dtype=np.float64)
