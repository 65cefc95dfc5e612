"""How ranges on one thread nest: the innermost range around an instant, and self time.

Ranges are given as parallel arrays (thread key, start, duration) in the
caller's order, and answers come back in that order, so the caller keeps its
own mapping to frame rows. The Python loop runs over ranges (hundreds to a few
thousand), never over events; queries are answered with searchsorted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Nesting", "innermost", "nest", "self_time"]


@dataclass(frozen=True)
class Nesting:
    """Ranges sorted by (thread, start, longest first), each with its parent.

    `order[i]` is the caller's index of sorted range i; `parent[i]` is the sorted
    index of the innermost range still open when range i starts on its thread, or -1.
    """

    order: np.ndarray
    thread: np.ndarray
    start: np.ndarray
    end: np.ndarray
    dur: np.ndarray
    parent: np.ndarray


def nest(thread: np.ndarray, start: np.ndarray, dur: np.ndarray) -> Nesting:
    """Sort once; both the innermost-range search and self time read the same nesting."""
    dur = np.nan_to_num(dur)
    end = start + dur
    order = np.lexsort((-end, start, thread))
    thread, start, end = thread[order], start[order], end[order]
    return Nesting(order, thread, start, end, dur[order], _parents(thread.tolist(), start.tolist(), end.tolist()))


def _parents(thread: list, start: list, end: list) -> np.ndarray:
    parent = np.full(len(thread), -1, dtype=np.int64)
    stack: list[int] = []
    previous = None
    for i, (th, st) in enumerate(zip(thread, start, strict=True)):
        if th != previous:
            stack.clear()
            previous = th
        while stack and end[stack[-1]] <= st:  # closed by now: a sibling, not a parent
            stack.pop()
        if stack:
            parent[i] = stack[-1]
        stack.append(i)
    return parent


def innermost(ranges: Nesting, q_thread: np.ndarray, q_ts: np.ndarray) -> np.ndarray:
    """Caller's index of the innermost range with start <= t <= end on the query's thread, or -1."""
    found = np.full(len(q_ts), -1, dtype=np.int64)
    if len(ranges.order) == 0 or len(q_ts) == 0:
        return found
    thread, start, end, parent = ranges.thread, ranges.start, ranges.end, ranges.parent
    for th in np.unique(thread):
        lo, hi = np.searchsorted(thread, th, "left"), np.searchsorted(thread, th, "right")
        queries = np.flatnonzero(q_thread == th)
        # The last range to start at or before t; if it has already ended, one of its ancestors may not have.
        found[queries] = lo + np.searchsorted(start[lo:hi], q_ts[queries], "right") - 1
        found[queries[found[queries] < lo]] = -1
    while True:
        ended = (found >= 0) & (end[np.maximum(found, 0)] < q_ts)
        if not ended.any():
            break
        found[ended] = parent[found[ended]]
    return np.where(found >= 0, ranges.order[np.maximum(found, 0)], -1)


def self_time(ranges: Nesting) -> np.ndarray:
    """Duration of each range minus the part of its direct children inside it (caller's order)."""
    if len(ranges.order) == 0:
        return np.zeros(0)
    start, end, dur, parent = ranges.start, ranges.end, ranges.dur, ranges.parent
    child = np.flatnonzero(parent >= 0)
    up = parent[child]
    # Durations, not end - start: at epoch-µs timestamps (~1.7e15) float64 steps are 0.25 µs.
    # A child that overruns its parent (integer-µs rounding) is clipped, not subtracted whole.
    overlap = np.where(end[child] <= end[up], dur[child], end[up] - start[child])
    inside = np.bincount(up, weights=overlap, minlength=len(ranges.order))
    out = np.empty(len(ranges.order))
    out[ranges.order] = np.maximum(dur - inside, 0.0)
    return out
