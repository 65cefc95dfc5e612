"""Terminal rendering of a sweep: TTFT and its big parts per length, the fits, the crossover."""
from __future__ import annotations

import math

from analyzers.sweep import Sweep
from analyzers.vocabulary import TOTAL

MAIN = ("attention", "mlp", "qkv_proj", "o_proj", "lm_head")


def render_sweep(sweep: Sweep, console) -> None:
    """TTFT and its big parts per length, the fits, the crossover and the extrapolation."""
    from rich.table import Table

    table, summary, path = sweep.table, sweep.summary, sweep.path

    wide = table.pivot_table(index="seq_len", columns="component", values="ms", aggfunc="sum")
    grid = Table(title=f"{summary.get('model', '')} sweep", title_justify="left", pad_edge=False)
    grid.add_column("tokens", justify="right")
    grid.add_column("TTFT ms", justify="right")
    shown = [c for c in MAIN if c in wide.columns]
    for component in shown:
        grid.add_column(f"{component} ms", justify="right")
    grid.add_column("attention share", justify="right")
    for n, row in wide.iterrows():
        share = row.get("attention", math.nan) / row[TOTAL] if row[TOTAL] else math.nan
        grid.add_row(f"{n:,}", f"{row[TOTAL]:,.2f}", *[f"{row[c]:,.2f}" for c in shown], f"{100 * share:.1f}%")
    console.print(grid)
    console.print(_fits_grid(summary))
    for line in fit_lines(summary):
        console.print(line, markup=False)
    console.print(f"sweep folder: {path}", markup=False)


def _fits_grid(summary: dict):
    from rich.table import Table

    fits = Table(title="fits: ms = c0 + c1·n (+ c2·n² for attention)", title_justify="left", pad_edge=False)
    for column in ("component", "fit", "c0", "c1", "c2", "R²", "max |residual| ms", "extrapolated"):
        fits.add_column(column, justify="left" if column in ("component", "fit", "extrapolated") else "right")
    for f in summary["fits"]:
        verdict = "yes" if f.get("extrapolate") else "—" if f["component"] == TOTAL else "no"
        fits.add_row(f["component"], f["fit"], f"{f['c0']:.4g}", f"{f['c1']:.4g}", f"{f['c2']:.4g}",
                     f"{f['r2']:.4f}", f"{f['max_abs_residual_ms']:.3g}", verdict)
    return fits


def fit_lines(summary: dict) -> list[str]:
    """The lines under the fits: what was refused and why, the crossover, the drift, the TTFT ahead."""
    lines = []
    refused: dict[str, list[str]] = {}  # one line per reason: a 3-length sweep refuses every fit alike
    for f in summary["fits"]:
        if f["component"] != TOTAL and f.get("refused_because"):
            refused.setdefault(f["refused_because"], []).append(f["component"])
    if refused:
        lines.append(f"not extrapolated, by the rule that {summary['fit_rule']}:")
        lines += [f"  {', '.join(names)}: {why}" for why, names in refused.items()]
    cross = summary.get("crossover_attention_over_mlp")
    if cross:
        lines.append(f"attention overtakes the MLP at about {cross:,.0f} tokens (from fits that pass the rule)")
    elif summary.get("crossover_refused_because"):
        lines.append(f"no crossover reported: {summary['crossover_refused_because']}")
    else:
        lines.append(f"attention does not overtake the MLP below {summary['crossover_searched_up_to']:,.0f} tokens "
                     "(from the fits)")
    drift = max(summary["linear_ttft_drift"], key=lambda r: abs(r["residual_pct"]))
    lines.append(f"a linear model TTFT = k·n + C is off by up to {drift['residual_pct']:+.1f}% "
                 f"(at {drift['seq_len']:,} tokens)")
    ahead = summary.get("extrapolated_ttft", [])
    no = [r for r in ahead if r.get("ms") is None or r["ms"] != r["ms"]]
    if no:  # the sum is judged as one fit: one reason for every length
        at = " and ".join(f"{r['seq_len']:,}" for r in no)
        lines.append(f"no extrapolated TTFT at {at} tokens: {no[0].get('refused_because', '')}")
    for row in (r for r in ahead if r not in no):
        lines.append(f"extrapolated TTFT at {row['seq_len']:,} tokens: {row['ms']:,.1f} ± {row['stderr_ms']:,.1f} ms "
                     "(sum of the component fits; an extrapolation, not a measurement)")
    return lines


def sweep_json(sweep: Sweep) -> dict:
    """What `sweep --json` and `analyze SWEEP --json` print: the summary and where it lives."""
    return {**sweep.summary, "sweep_dir": sweep.path}
