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
from analyzers.scaling import (
    FIT_RULE,
    crossover,
    extrapolate,
    extrapolate_total,
    fit_components,
    fits_table,
    linear_drift,
    refusal,
)
from analyzers.tables import RunTables
from analyzers.vocabulary import TOTAL

# Where the fits are extrapolated, as multiples of the longest measured length; the crossover is searched
# no further than the farthest of them, since that is as far as the fits are judged (scaling.FIT_RULE).
EXTRAPOLATE_TO = (2, 4)
CROSSOVER_REACH = max(EXTRAPOLATE_TO)
# Why the TTFT's own linear fit has no extrapolation: it is the model the sweep shows to be wrong.
LINEAR_TTFT = "the linear TTFT fit is shown only for its drift; the TTFT ahead is the sum of the component fits"


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


def _crossover(fits: dict, refusals: dict[str, str], n_max: float) -> tuple[float | None, str]:
    """The crossover from fits that pass FIT_RULE, or None and why it is not reported."""
    if "attention" not in fits or "mlp" not in fits:
        return None, "the sweep has no attention or no MLP time to compare"
    failed = [f"the {name} fit: {refusals[name]}" for name in ("attention", "mlp") if refusals[name]]
    if failed:
        return None, "; ".join(failed)
    return crossover(fits["attention"], fits["mlp"], n_max), ""


def summarise(table: pd.DataFrame) -> dict:
    """Fits, their verdicts under FIT_RULE, crossover and the linear model's drift (the body of sweep.json)."""
    fits = fit_components(table[table["component"] != TOTAL])
    lengths = sorted(int(n) for n in table["seq_len"].unique())
    targets = [k * lengths[-1] for k in EXTRAPOLATE_TO]
    parts = {k: f for k, f in fits.items() if k != TOTAL}
    refusals = {name: refusal(fit, targets) for name, fit in parts.items()}
    n_max = CROSSOVER_REACH * lengths[-1]
    cross, cross_refused = _crossover(fits, refusals, n_max)
    # TTFT ahead = the sum of the component fits (not the linear TTFT fit, which is the model being
    # shown wrong), judged as a whole; a fit with no spare points has an unknown error, so has the sum.
    totals = extrapolate_total(parts, targets)
    return {
        "lengths": lengths,
        "fit_rule": FIT_RULE,
        "residuals": _residuals(table, fits),
        "fits": fits_table(fits, {**refusals, TOTAL: LINEAR_TTFT}).to_dict("records"),
        "crossover_attention_over_mlp": cross,
        "crossover_refused_because": cross_refused,
        "crossover_searched_up_to": n_max,
        "extrapolated": extrapolate(parts, targets).to_dict("records"),
        "extrapolated_ttft": totals.to_dict("records"),
        "linear_ttft_drift": linear_drift(table).to_dict("records"),
    }


# sweep.json field -> accepted JSON types; rows of the listed tables must carry these numeric keys
SWEEP_FIELDS: dict[str, tuple[type, ...]] = {
    "lengths": (list,), "fits": (list,), "linear_ttft_drift": (list,), "runs": (list,),
    "crossover_searched_up_to": (int, float), "crossover_attention_over_mlp": (int, float, type(None)),
    "extrapolated_ttft": (list,), "extrapolated": (list,), "residuals": (list,),
    "fit_rule": (str,), "crossover_refused_because": (str,),
}
ROW_NUMBERS: dict[str, tuple[str, ...]] = {
    "fits": ("c0", "c1", "c2", "r2", "max_abs_residual_ms"),
    "linear_ttft_drift": ("seq_len", "residual_pct"),
    "extrapolated_ttft": ("seq_len",),
}
# rows whose time is a number, or null with the reason it was refused
REFUSABLE = ("extrapolated_ttft", "extrapolated")
SWEEP_CSV_COLUMNS = ("seq_len", "component", "ms")


def _bad(source: Path, field: str, what: str) -> InputError:
    return InputError(f"{source}: field '{field}' {what}; it was cut short or hand-edited, so run the sweep again.")


def check_summary(summary: object, source: Path) -> dict:
    """Every field the renderers read, with its JSON type; one sentence naming the file and field."""
    if not isinstance(summary, dict):
        raise InputError(f"{source} holds a JSON {type(summary).__name__}, not a sweep summary; run the sweep again.")
    for field, types in SWEEP_FIELDS.items():
        if field not in summary:
            raise _bad(source, field, "is missing")
        value = summary[field]
        if not isinstance(value, types) or isinstance(value, bool):
            raise _bad(source, field, f"holds {json.dumps(value)[:40]}, not {' or '.join(t.__name__ for t in types)}")
    for field, keys in ROW_NUMBERS.items():
        for row in summary[field]:
            if not isinstance(row, dict) or not all(_is_number(row.get(k)) for k in keys):
                raise _bad(source, field, f"holds a row without numbers for {', '.join(keys)}")
    for field in REFUSABLE:
        for row in summary[field]:
            if not (isinstance(row, dict) and (_is_number(row.get("ms")) or row.get("ms") is None and row.get("refused_because"))):
                raise _bad(source, field, "holds a row with neither a time nor the reason it was refused")
    if not all(isinstance(r, str) for r in summary["runs"]):
        raise _bad(source, "runs", "holds something other than folder names")
    return summary


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_sweep(folder: str | Path) -> Sweep:
    """A sweep folder read back; one sentence when it is not whole."""
    folder = Path(folder)
    try:
        summary = json.loads((folder / "sweep.json").read_text())
        table = pd.read_csv(folder / "sweep.csv")
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder} is a sweep folder that cannot be read whole ({exc}); run the sweep again.") from None
    except RecursionError:  # json.loads on "[[[[..." deeper than the interpreter's stack
        raise InputError(f"{folder / 'sweep.json'} nests JSON deeper than Python can parse, so it is not a sweep "
                         "summary; run the sweep again.") from None
    missing = [c for c in SWEEP_CSV_COLUMNS if c not in table.columns]
    if missing or not pd.api.types.is_numeric_dtype(table["ms"]) or not pd.api.types.is_numeric_dtype(table["seq_len"]):
        raise InputError(f"{folder / 'sweep.csv'} lacks numeric {', '.join(missing or ['seq_len/ms'])} columns; "
                         "it was cut short or hand-edited, so run the sweep again.")
    if isinstance(summary, dict) and "fit_rule" not in summary:
        # written before fits were judged: judge them now, from the measured table, rather than show
        # extrapolations no rule has passed
        summary = {**summary, **summarise(table), "refitted": "fits judged again from sweep.csv under fit_rule"}
    check_summary(summary, folder / "sweep.json")
    return Sweep(table, summary, str(folder))
