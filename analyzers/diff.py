"""Two runs side by side: what changed, and which changes are more than noise.

A change is flagged only when the repeats cannot explain it. The rule, per
component (and for the TTFT itself):

    flagged = the two [ms_min, ms_max] ranges over repeats do not overlap
              and |delta_ms| > max(spread_a, spread_b)

where spread = ms_max − ms_min. Both must hold: disjoint ranges alone would
flag a component whose ranges are a hair apart, and a delta larger than the
spreads alone would flag a median that sits at the edge of an overlapping
range. With a single repeat the spread is 0 and any change flags, so
`diff_warnings` says when that is the case.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analyzers.components import breakdown, ttft_stats
from analyzers.run import Run
from analyzers.vocabulary import TOTAL

DIFF_COLUMNS = ["component", "ms_a", "ms_b", "delta_ms", "delta_pct", "spread_a_ms", "spread_b_ms", "flagged"]
# What makes two runs not like for like: comparing them is allowed (that is
# often the point, e.g. two lengths), but the reader should know.
COMPARED_FIELDS = ("model", "seq_len", "batch", "dtype", "device", "device_name", "attn", "timing",
                   "layers_built")


def diff_warnings(a: Run, b: Run) -> list[str]:
    """One sentence per setting in which the runs differ, and per run too short to show noise."""
    out = []
    for name in COMPARED_FIELDS:
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            out.append(f"{name} differs ({va} vs {vb}): the runs do not measure the same thing, "
                       "so read the deltas as the effect of that change too.")
    for label, run in (("a", a), ("b", b)):
        if len(run.ttft_ns) < 2:
            out.append(f"run {label} has a single repeat, so its spread is 0 and any change is flagged; "
                       "use more repeats to tell noise from change.")
    return out


def _flag(lo_a: float, hi_a: float, lo_b: float, hi_b: float, delta: float) -> bool:
    disjoint = hi_b < lo_a or hi_a < lo_b
    return bool(disjoint and abs(delta) > max(hi_a - lo_a, hi_b - lo_b))


def _row(component: str, ms_a: float, ms_b: float, lo_a: float, hi_a: float, lo_b: float, hi_b: float) -> dict:
    delta = ms_b - ms_a
    return {
        "component": component,
        "ms_a": ms_a,
        "ms_b": ms_b,
        "delta_ms": delta,
        # relative to a; undefined when a did not have the component at all
        "delta_pct": 100 * delta / ms_a if ms_a else math.nan,
        "spread_a_ms": hi_a - lo_a,
        "spread_b_ms": hi_b - lo_b,
        "flagged": _flag(lo_a, hi_a, lo_b, hi_b, delta),
    }


@dataclass(frozen=True)
class Diff:
    """Two runs compared: per-component rows, the caveats, and what to call each run."""

    name_a: str
    name_b: str
    table: pd.DataFrame
    warnings: list[str]


def compare(a: Run, b: Run, name_a: str, name_b: str) -> Diff:
    table = diff_runs(a, b)
    return Diff(name_a, name_b, table, table.attrs["warnings"])


def diff_runs(a: Run, b: Run) -> pd.DataFrame:
    """Per component present in either run, then `ttft`: ms of each median repeat, delta (b − a), flagged.

    The warnings of `diff_warnings(a, b)` travel along in `.attrs["warnings"]`.
    """
    ta, tb = breakdown(a).set_index("component"), breakdown(b).set_index("component")
    out = []
    # union of both tables, in the order of a's (the forward pass), then any only in b
    for comp in list(ta.index) + [c for c in tb.index if c not in ta.index]:
        ra = ta.loc[comp] if comp in ta.index else None
        rb = tb.loc[comp] if comp in tb.index else None
        in_a = ra is not None and (bool(ra["present"]) or ra["ms"] != 0)
        in_b = rb is not None and (bool(rb["present"]) or rb["ms"] != 0)
        if not (in_a or in_b):
            continue
        # a component missing on one side is a 0 there, with no spread
        ms_a, lo_a, hi_a = (float(ra["ms"]), float(ra["ms_min"]), float(ra["ms_max"])) if in_a else (0.0,) * 3
        ms_b, lo_b, hi_b = (float(rb["ms"]), float(rb["ms_min"]), float(rb["ms_max"])) if in_b else (0.0,) * 3
        out.append(_row(comp, ms_a, ms_b, lo_a, hi_a, lo_b, hi_b))
    sa, sb = ttft_stats(a), ttft_stats(b)
    out.append(_row(TOTAL, sa["p50_ms"], sb["p50_ms"], sa["min_ms"], sa["max_ms"], sb["min_ms"], sb["max_ms"]))
    table = pd.DataFrame(out, columns=DIFF_COLUMNS)
    table.attrs["warnings"] = diff_warnings(a, b)
    return table
