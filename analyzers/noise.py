"""How far a run's numbers can be trusted: the noise of its repeats and the machine around them.

A TTFT is the machine's number as much as the model's. Two things decide
whether a run is too noisy to read at face value, each by a stated limit:

- the spread of its TTFT over the repeats, (p90 − p10) / p50 with
  nearest-rank quantiles (so below 10 repeats it is (max − min) / median):
  above SPREAD_LIMIT the repeats disagree by more than most effects a
  user profiles for;
- the contention the capture side recorded over the timed repeats
  (`Run.contention`, `profiler.contention`): others' share of the CPUs,
  load beyond our own threads, involuntary switches per CPU-second of ours,
  CPU steal. A uniformly slowed run has a small spread and is still slow,
  so contention alone also marks a run noisy.

Separately, the breakdown table is one real repeat (the median-TTFT one, so
its rows sum to its TTFT); `outliers` names the components whose value in
that repeat lies far outside their own values in the other repeats, so an
outlier cannot silently become the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzers.components import median_repeat, nearest_rank_index, remainder_component
from analyzers.run import Run

SPREAD_LIMIT = 0.10  # (p90 − p10) / p50 of TTFT over repeats
OTHERS_BUSY_LIMIT = 0.20  # share of all CPU time busy with other processes
LOAD_EXCESS_LIMIT = 0.5  # (load1 − our own CPUs in use) / usable CPUs
NIVCSW_LIMIT = 250.0  # involuntary switches per CPU-second of ours: preempted every 4 ms
STEAL_LIMIT = 0.05  # share of CPU time a hypervisor gave another guest
MIN_OWN_CPU_S = 0.1  # below this much CPU time of ours, switches per CPU-second is mostly rounding
# A component of the median-TTFT repeat is an outlier when it lies outside the other repeats'
# [min, max] by more than that range and more than this share of their median, and by more than
# this share of the repeat's TTFT (smaller excursions cannot mislead a reading of the table).
OUTLIER_OF_MEDIAN, OUTLIER_OF_TTFT = 0.5, 0.005
OUTLIER_COLUMNS = ["component", "ms", "median_ms", "others_min_ms", "others_max_ms", "excess_ms"]

# (reading, limit, advice key, phrase with {} for the value, how a number of it reads)
CHECKS = (
    ("others_busy_share", OTHERS_BUSY_LIMIT, "machine", "other processes used {} of the CPUs", "{:.0%}"),
    ("load_excess", LOAD_EXCESS_LIMIT, "machine", "load beyond our own threads {} per CPU", "{:.2f}"),
    ("nivcsw_per_cpu_s", NIVCSW_LIMIT, "switches", "{} involuntary switches per CPU-second", "{:,.0f}"),
    ("steal_share", STEAL_LIMIT, "steal", "CPU steal {}", "{:.0%}"),
)
ADVICE = {
    "spread": "more repeats (20 or more) so the median settles",
    "machine": "a quieter machine (nothing else running)",
    "switches": "pinned threads (taskset to free cores, torch threads no more than those cores)",
    "steal": "a host without CPU steal (dedicated or bare metal)",
}


@dataclass(frozen=True)
class Noise:
    """The run's noise readings, the verdict under the limits above, and its outlier components."""

    repeats: int
    spread: float | None  # (p90 − p10) / p50 of TTFT; None with one repeat
    signals: dict  # the contention readings in a common form (None where unknown)
    noisy: bool
    reasons: list[str]  # one phrase per reading over its limit
    advice: list[str]  # what would make the next run quieter
    verdict: str  # the one line the terminal prints
    outliers: pd.DataFrame = field(repr=False)  # OUTLIER_COLUMNS

    def to_dict(self) -> dict:
        return {"noisy": self.noisy, "verdict": self.verdict, "spread": self.spread, "repeats": self.repeats,
                "reasons": self.reasons, "advice": self.advice, "signals": self.signals,
                "outliers": self.outliers.to_dict("records")}


def ttft_spread(samples: list[int]) -> float | None:
    """(p90 − p10) / p50 with nearest-rank quantiles; None with fewer than two samples."""
    if len(samples) < 2:
        return None
    q = [samples[nearest_rank_index(samples, p)] for p in (0.1, 0.5, 0.9)]
    return (q[2] - q[0]) / q[1]


def contention_signals(contention: dict | None) -> dict:
    """Run.contention reduced to the readings the rule compares with its limits."""
    c = contention or {}
    load, own, cpus = c.get("load1"), c.get("own_cpus"), c.get("cpus")
    own_cpu_s = (own or 0.0) * (c.get("window_s") or 0.0)
    return {
        "recorded": bool(c),
        "others_busy_share": c.get("others_busy_share"),
        "load_excess": None if load is None or own is None or not cpus else max(0.0, load - own) / cpus,
        "nivcsw_per_cpu_s": c["nivcsw"] / own_cpu_s if own_cpu_s >= MIN_OWN_CPU_S and "nivcsw" in c else None,
        "steal_share": c.get("steal_share"),
    }


def _over(signals: dict, spread: float | None, repeats: int) -> list[tuple[str, str]]:
    """(advice key, phrase) for each reading over its limit."""
    out = []
    if spread is not None and spread > SPREAD_LIMIT:
        out.append(("spread", f"TTFT spread {spread:.0%} over {repeats} repeats (limit {SPREAD_LIMIT:.0%})"))
    for key, limit, advice, text, number in CHECKS:
        value = signals.get(key)
        if value is not None and value > limit:
            out.append((advice, f"{text.format(number.format(value))} (limit {number.format(limit)})"))
    return out


def _quiet_phrase(signals: dict, spread: float | None, repeats: int) -> str:
    parts = [f"TTFT spread {spread:.1%} over {repeats} repeats" if spread is not None else "one repeat, so no spread"]
    if not signals["recorded"]:
        parts.append("no contention readings in this run")
    else:
        shown = [text.format(number.format(signals[key])) for key, _, _, text, number in CHECKS
                 if signals.get(key) is not None]
        parts.append("no contention seen" + (f" ({', '.join(shown)})" if shown else ""))
    return "; ".join(parts)


def assess_noise(run: Run) -> Noise:
    """The run's noise and whether it is too noisy to trust: any reading over its limit makes it so."""
    spread, repeats = ttft_spread(run.ttft_ns), len(run.ttft_ns)
    signals = contention_signals(run.contention)
    over = _over(signals, spread, repeats)
    advice = list(dict.fromkeys(ADVICE[key] for key, _ in over))
    if over:
        verdict = ("noisy, do not trust small differences: " + "; ".join(text for _, text in over)
                   + ". Try " + ", ".join(advice) + ".")
    elif spread is None:  # one repeat: nothing says whether it was typical (with no warmup, it is the cold one)
        verdict = ("too few repeats to judge: " + _quiet_phrase(signals, spread, repeats)
                   + "; use --repeat 7 or more.")
    else:
        verdict = "quiet enough to trust: " + _quiet_phrase(signals, spread, repeats) + "."
    return Noise(repeats=repeats, spread=spread, signals=signals, noisy=bool(over), reasons=[t for _, t in over],
                 advice=advice, verdict=verdict, outliers=outlier_components(run))


def per_repeat_ms(run: Run) -> pd.DataFrame:
    """ms per (repeat, component): rows are repeats, columns components, the remainder = TTFT − claimed."""
    rows = pd.DataFrame(run.component_ns, columns=["repeat", "component", "layer", "detail", "ns", "calls"])
    table = rows.groupby(["repeat", "component"])["ns"].sum().unstack(fill_value=0)
    table = table.reindex(range(len(run.ttft_ns)), fill_value=0).astype(float)
    ttft = pd.Series(run.ttft_ns, dtype=float)
    remainder = remainder_component(run)
    table[remainder] = ttft - table.drop(columns=[remainder], errors="ignore").sum(axis=1)
    return table / 1e6


def outlier_components(run: Run) -> pd.DataFrame:
    """Components whose median-TTFT-repeat value lies far outside the other repeats' (rule at the top).

    Needs three repeats: with two, which one is the outlier cannot be told.
    """
    if len(run.ttft_ns) < 3:
        return pd.DataFrame(columns=OUTLIER_COLUMNS)
    table, chosen = per_repeat_ms(run), median_repeat(run)
    ttft_ms = run.ttft_ns[chosen] / 1e6
    out = []
    for comp in table.columns:
        values = table[comp].to_numpy()
        mine, others = values[chosen], np.delete(values, chosen)
        lo, hi, mid = others.min(), others.max(), float(np.median(others))
        excess = max(mine - hi, lo - mine, 0.0)
        if excess > max(hi - lo, OUTLIER_OF_MEDIAN * mid) and excess > OUTLIER_OF_TTFT * ttft_ms:
            out.append({"component": comp, "ms": float(mine), "median_ms": float(np.median(values)),
                        "others_min_ms": float(lo), "others_max_ms": float(hi), "excess_ms": float(excess)})
    return pd.DataFrame(out, columns=OUTLIER_COLUMNS)


def outlier_lines(noise: Noise) -> list[str]:
    """One sentence per outlier component, for the lines under the table."""
    return [f"! {r.component}: {r.ms:,.3f} ms in the median-TTFT repeat the table shows, but "
            f"{r.others_min_ms:,.3f}–{r.others_max_ms:,.3f} ms in the other repeats (median "
            f"{r.median_ms:,.3f} ms over all {noise.repeats}); that repeat is kept so the rows sum to its TTFT."
            for r in noise.outliers.itertuples(index=False)]
