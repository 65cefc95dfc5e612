"""A sweep: one run per prompt length, the long table, and what the fits say.

`sweep.csv` holds one row per (length, component) plus the TTFT; `sweep.json`
holds the fits, the crossover, the extrapolation and how far a linear TTFT
model drifts. Computed here once and read back by `analyze` and `report`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analyzers.errors import InputError
from analyzers.scaling import crossover, extrapolate, fit_components, fits_table, linear_drift
from analyzers.tables import RunTables
from analyzers.vocabulary import TOTAL

# How far past the longest measured length the crossover is searched, and where TTFT is extrapolated.
CROSSOVER_REACH = 8
EXTRAPOLATE_TO = (2, 4)


@dataclass(frozen=True)
class Sweep:
    """The long table, its summary (the body of sweep.json) and the folder holding them."""

    table: pd.DataFrame
    summary: dict
    path: str


def sweep_rows(tables: RunTables) -> list[dict]:
    """One row per present component of a run, plus its TTFT: the sweep's long table."""
    n, stats = tables.run.seq_len, tables.stats
    rows = [{"seq_len": n, "component": r.component, "ms": r.ms, "ms_min": r.ms_min, "ms_max": r.ms_max,
             "share": r.share} for r in tables.breakdown.itertuples() if r.present]
    rows.append({"seq_len": n, "component": TOTAL, "ms": stats["p50_ms"], "ms_min": stats["min_ms"],
                 "ms_max": stats["max_ms"], "share": 1.0})
    return rows


def _residuals(table: pd.DataFrame, fits: dict) -> list[dict]:
    out = []
    for component, fit in fits.items():
        for row in table[table["component"] == component].itertuples(index=False):
            fitted = fit.predict(row.seq_len)[0]
            out.append({"component": component, "seq_len": int(row.seq_len), "ms": row.ms,
                        "fitted_ms": fitted, "residual_ms": row.ms - fitted})
    return out


def summarise(table: pd.DataFrame) -> dict:
    """Fits, crossover and the linear model's drift, as data (also the body of sweep.json)."""
    fits = fit_components(table[table["component"] != TOTAL])
    lengths = sorted(int(n) for n in table["seq_len"].unique())
    n_max = CROSSOVER_REACH * lengths[-1]
    cross = crossover(fits["attention"], fits["mlp"], n_max) if "attention" in fits and "mlp" in fits else None
    parts = extrapolate({k: f for k, f in fits.items() if k != TOTAL}, [k * lengths[-1] for k in EXTRAPOLATE_TO])
    # TTFT ahead = the sum of the component fits (not the linear TTFT fit, which is the model being
    # shown wrong); errors added in quadrature, as if the components' fit errors were independent.
    # A fit with no spare points has an unknown error (NaN), and so has any sum that includes it.
    totals = parts.groupby("seq_len").agg(ms=("ms", "sum"),
                                          stderr_ms=("stderr_ms", lambda e: (e**2).sum(skipna=False) ** 0.5))
    return {
        "lengths": lengths,
        "residuals": _residuals(table, fits),
        "fits": fits_table(fits).to_dict("records"),
        "crossover_attention_over_mlp": cross,
        "crossover_searched_up_to": n_max,
        "extrapolated": parts.to_dict("records"),
        "extrapolated_ttft": [{"seq_len": int(n), "ms": r.ms, "stderr_ms": r.stderr_ms} for n, r in totals.iterrows()],
        "linear_ttft_drift": linear_drift(table).to_dict("records"),
    }


def load_sweep(folder: str | Path) -> Sweep:
    """A sweep folder read back; one sentence when it is not whole."""
    folder = Path(folder)
    try:
        summary = json.loads((folder / "sweep.json").read_text())
        table = pd.read_csv(folder / "sweep.csv")
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder} is a sweep folder that cannot be read whole ({exc}); run the sweep again.") from None
    needed = {"fits", "linear_ttft_drift", "runs", "crossover_searched_up_to"}
    if not isinstance(summary, dict) or not needed <= set(summary):
        missing = sorted(needed - set(summary)) if isinstance(summary, dict) else ["an object"]
        raise InputError(f"{folder / 'sweep.json'} lacks {', '.join(missing)}; it was cut short or hand-edited, "
                         "so run the sweep again.")
    return Sweep(table, summary, str(folder))
