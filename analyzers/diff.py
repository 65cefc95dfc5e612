"""Two runs side by side: what changed, and which changes are more than noise.

A change is flagged only when the repeats make it unlikely to be noise. Per
row (each component present in either run, and the TTFT itself), the
per-repeat times of A and B go through a two-sided Mann-Whitney U test
(`mann_whitney_p`: exact permutation distribution, ties included, up to
EXACT_MAX samples in all; the normal approximation with tie correction
beyond). The rows are one family: Holm's step-down procedure keeps the
chance that two runs of the same configuration flag anything at all at
LEVEL (5%), however many components are compared.

Rank tests ignore how far an outlier repeat lies, so one slow repeat cannot
flag a component; they need no assumption about the shape of timing noise.
The price is that few repeats can never reach the level: with m and n
repeats the smallest two-sided p is 2 / C(m+n, m) (every repeat of B beyond
every repeat of A), and when that is above Holm's first threshold LEVEL / K
nothing can be flagged, so `DiffTest` says so and how many repeats would do.

Significance is not yet a change. Repeats within one run cannot show the
machine drifting between two runs (another process, a clock step, a cache
layout), and on a shared machine that drift reaches several percent: two runs
of one configuration here differed by 12% in TTFT with every repeat of one
beyond every repeat of the other. So a row is `flagged` only when it is
`significant`, its change is at least MIN_EFFECT of A's time, and neither run
is noisy (analyzers.noise); a significant row that fails the other two is
shown as a candidate (`changed?`), never as a change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzers.components import breakdown, ttft_stats
from analyzers.noise import Noise, assess_noise, per_repeat_ms
from analyzers.run import Run
from analyzers.vocabulary import TOTAL

LEVEL = 0.05  # family-wise: P(any row flagged | both runs measure the same thing) <= LEVEL
MIN_EFFECT = 0.05  # the smallest relative change called a change: below it, between-run drift can explain it
EXACT_MAX = 80  # m + n up to which the permutation distribution is counted exactly
DIFF_COLUMNS = ["component", "ms_a", "ms_b", "delta_ms", "delta_pct", "spread_a_ms", "spread_b_ms", "p_value",
                "p_holm", "significant", "flagged"]
# What makes two runs not like for like: comparing them is allowed (that is
# often the point, e.g. two lengths), but the reader should know.
COMPARED_FIELDS = ("model", "seq_len", "batch", "dtype", "device", "device_name", "attn", "timing",
                   "layers_built")


def diff_warnings(a: Run, b: Run) -> list[str]:
    """One sentence per setting in which the runs differ."""
    out = []
    for name in COMPARED_FIELDS:
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            out.append(f"{name} differs ({va} vs {vb}): the runs do not measure the same thing, "
                       "so read the deltas as the effect of that change too.")
    return out


def _doubled_midranks(values: np.ndarray) -> np.ndarray:
    """2 × the mid-rank of each value (1-based, ties share the mean rank): integers, so sums count exactly."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.int64)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + 1) + end  # first + last rank of the tie group
            start = end
    return ranks


def _exact_p(scores: np.ndarray, m: int) -> float:
    """P(|T − E| ≥ |t − E|) over all C(N, m) ways to pick A's m scores; T = sum of A's doubled ranks."""
    total = int(scores.sum())
    counts = np.zeros((m + 1, total + 1))
    counts[0, 0] = 1.0
    for w in scores:  # 0/1 knapsack over the items: counts[k, s] = subsets of k items summing to s
        counts[1:, w:] = counts[1:, w:] + counts[:-1, : total + 1 - w]
    dist = counts[m]
    n_all = len(scores)
    expected = m * (n_all + 1)  # E[T] in doubled ranks
    observed = abs(int(scores[:m].sum()) - expected)
    sums = np.arange(total + 1)
    return float(dist[np.abs(sums - expected) >= observed].sum() / dist.sum())


def _normal_p(scores: np.ndarray, m: int, n: int) -> float:
    """Normal approximation to the U distribution with the tie correction and a continuity correction."""
    n_all = m + n
    u = scores[:m].sum() / 2 - m * (m + 1) / 2
    _, tie_sizes = np.unique(scores, return_counts=True)
    var = m * n / 12 * ((n_all + 1) - float((tie_sizes**3 - tie_sizes).sum()) / (n_all * (n_all - 1)))
    if var <= 0:
        return 1.0
    z = max(abs(u - m * n / 2) - 0.5, 0.0) / math.sqrt(var)
    return math.erfc(z / math.sqrt(2))


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of the Mann-Whitney U test of samples a and b (1.0 when either is empty)."""
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        return 1.0
    scores = _doubled_midranks(np.asarray(list(a) + list(b), dtype=float))
    if len(np.unique(scores)) == 1:
        return 1.0
    return _exact_p(scores, m) if m + n <= EXACT_MAX else _normal_p(scores, m, n)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values: a row is flagged at level L exactly when its adjusted p ≤ L."""
    k = len(p_values)
    adjusted, running = [0.0] * k, 0.0
    for rank, i in enumerate(sorted(range(k), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (k - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def smallest_p(m: int, n: int) -> float:
    """The smallest two-sided p the test can give with m and n samples: every b beyond every a."""
    return min(1.0, 2 / math.comb(m + n, m)) if m and n else 1.0


def repeats_needed(tests: int, level: float = LEVEL) -> int:
    """Repeats per run at which a complete separation clears Holm's first threshold level / tests."""
    r = 1
    while smallest_p(r, r) > level / tests:
        r += 1
    return r


@dataclass(frozen=True)
class DiffTest:
    """How the rows were tested, and whether these repeat counts could flag anything at all."""

    level: float
    tests: int  # rows in the family (components in either run, plus ttft)
    repeats_a: int
    repeats_b: int
    smallest_p: float
    can_flag: bool
    repeats_needed: int
    note: str  # the sentence the diff prints under its table

    def to_dict(self) -> dict:
        return {"method": "Mann-Whitney U, two-sided, Holm", "level": self.level, "tests": self.tests,
                "repeats_a": self.repeats_a, "repeats_b": self.repeats_b, "smallest_p": self.smallest_p,
                "can_flag": self.can_flag, "repeats_needed": self.repeats_needed, "note": self.note}


def diff_test(repeats_a: int, repeats_b: int, tests: int, level: float = LEVEL) -> DiffTest:
    low, needed = smallest_p(repeats_a, repeats_b), repeats_needed(tests, level)
    can = low <= level / tests
    method = (f"Mann-Whitney U on the per-repeat times, two-sided, Holm-corrected over {tests} rows at "
              f"{level:.0%} family-wise")
    note = (f"{method}." if can else
            f"no change can be flagged: with {repeats_a} and {repeats_b} repeats the smallest p the test can give "
            f"is {low:.3g}, above {level:g}/{tests} ({method}); profile both runs with {needed} or more repeats.")
    return DiffTest(level, tests, repeats_a, repeats_b, low, can, needed, note)


@dataclass(frozen=True)
class Diff:
    """Two runs compared: per-component rows, the caveats, the test, and each run's noise."""

    name_a: str
    name_b: str
    table: pd.DataFrame
    warnings: list[str]
    test: DiffTest
    noise_a: Noise
    noise_b: Noise

    @property
    def flags_trusted(self) -> bool:
        """A flag is the configuration's change only when neither run was noisy: the test sees the noise
        within each run, not the machine drifting between them."""
        return not (self.noise_a.noisy or self.noise_b.noisy)


def compare(a: Run, b: Run, name_a: str, name_b: str) -> Diff:
    table = diff_runs(a, b)
    return Diff(name_a, name_b, table, table.attrs["warnings"], table.attrs["test"], assess_noise(a),
                assess_noise(b))


def _samples(per_repeat: pd.DataFrame, comp: str, present: bool) -> list[float]:
    """A component's per-repeat ms; a component a run lacks is 0 in every repeat."""
    if present and comp in per_repeat:
        return per_repeat[comp].tolist()
    return [0.0] * len(per_repeat)


def _rows(a: Run, b: Run) -> list[dict]:
    """The table's rows before the test: ms of each median repeat, delta, spread, per-repeat samples."""
    ta, tb = breakdown(a).set_index("component"), breakdown(b).set_index("component")
    pa, pb = per_repeat_ms(a), per_repeat_ms(b)
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
        out.append(_row(comp, (ms_a, lo_a, hi_a), (ms_b, lo_b, hi_b), _samples(pa, comp, in_a),
                        _samples(pb, comp, in_b)))
    sa, sb = ttft_stats(a), ttft_stats(b)
    out.append(_row(TOTAL, (sa["p50_ms"], sa["min_ms"], sa["max_ms"]), (sb["p50_ms"], sb["min_ms"], sb["max_ms"]),
                    [t / 1e6 for t in a.ttft_ns], [t / 1e6 for t in b.ttft_ns]))
    return out


def _row(component: str, a: tuple, b: tuple, samples_a: list[float], samples_b: list[float]) -> dict:
    (ms_a, lo_a, hi_a), (ms_b, lo_b, hi_b) = a, b
    delta = ms_b - ms_a
    return {
        "component": component, "ms_a": ms_a, "ms_b": ms_b, "delta_ms": delta,
        # relative to a; undefined when a did not have the component at all
        "delta_pct": 100 * delta / ms_a if ms_a else math.nan,
        "spread_a_ms": hi_a - lo_a, "spread_b_ms": hi_b - lo_b,
        "p_value": mann_whitney_p(samples_a, samples_b),
    }


def diff_runs(a: Run, b: Run) -> pd.DataFrame:
    """Per component present in either run, then `ttft`: ms of each median repeat, delta (b − a), the test.

    `significant` = Holm-adjusted p ≤ LEVEL (never when `DiffTest.can_flag` is false); `flagged` =
    significant, |change| ≥ MIN_EFFECT of A, and neither run noisy. The warnings of
    `diff_warnings(a, b)` travel along in `.attrs["warnings"]`, the `DiffTest` in `.attrs["test"]`.
    """
    table = pd.DataFrame(_rows(a, b))
    table["p_holm"] = holm(table["p_value"].tolist())
    test = diff_test(len(a.ttft_ns), len(b.ttft_ns), len(table))
    table["significant"] = (table["p_holm"] <= test.level) & test.can_flag
    large = (table["delta_ms"].abs() >= MIN_EFFECT * table["ms_a"].abs()) | (table["ms_a"] == 0)
    quiet = not (assess_noise(a).noisy or assess_noise(b).noisy)
    table["flagged"] = table["significant"] & large & quiet
    table = table[DIFF_COLUMNS]
    table.attrs["warnings"] = diff_warnings(a, b)
    table.attrs["test"] = test
    return table
