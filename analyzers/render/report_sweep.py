"""A sweep's part of the report: TTFT per length, the scaling fits with their quality, the crossover.

The fits, their R², the refusals and the crossover are sweep.json's (analyzers.sweep:summarise),
drawn and tabled as they are: nothing here fits again, so the curves are the ones the terminal
and `--json` report.
"""
from __future__ import annotations

import math

import pandas as pd

from analyzers.render import figures
from analyzers.render.fmt import ms
from analyzers.render.report_parts import Place, esc, figure, figure_block, frame_table, note, table
from analyzers.render.sweep import MAIN, fit_lines
from analyzers.sweep import Sweep
from analyzers.vocabulary import TOTAL


def sweep_facts(sweep: Sweep) -> str:
    summary, lengths = sweep.summary, sweep.summary["lengths"]
    rows = [["model", summary.get("model", "")], ["device", f"{summary.get('device', '')}: "
                                                            f"{summary.get('device_name', '')}"],
            ["dtype", summary.get("dtype", "")], ["lengths", ", ".join(f"{n:,}" for n in lengths)],
            ["runs", ", ".join(summary.get("runs", []))]]
    if summary.get("layers_total") and summary.get("layers_built") != summary.get("layers_total"):
        rows.append(["layers", f"{summary['layers_built']} of {summary['layers_total']} built"])
    return (table(["", ""], rows, text_columns=(0, 1)).replace("<table>", "<table class='facts'>", 1)
            + "".join(note(line) for line in fit_lines(summary)))


def length_table(sweep: Sweep) -> str:
    """TTFT and its big parts at each length, as the terminal's sweep table."""
    wide = sweep.table.pivot_table(index="seq_len", columns="component", values="ms", aggfunc="sum")
    shown = [c for c in MAIN if c in wide.columns]
    rows = []
    for n, row in wide.iterrows():
        share = row.get("attention", math.nan) / row[TOTAL] if row[TOTAL] else math.nan
        rows.append([f"{n:,}", ms(row[TOTAL]), *[ms(row[c]) for c in shown],
                     f"{100 * share:.1f}%" if share == share else ""])
    return table(["tokens", "TTFT ms", *[f"{c} ms" for c in shown], "attention share"], rows)


def fits_table(summary: dict) -> str:
    rows = [[f["component"], f["fit"], f["c0"], f["c1"], f["c2"], f"{f['r2']:.4f}", ms(f["max_abs_residual_ms"]),
             "yes" if f.get("extrapolate") else "—" if f["component"] == TOTAL else "no"] for f in summary["fits"]]
    # why a fit is not extrapolated is said once per reason above the table (fit_lines), not on every row
    return table(["component", "fit", "c0", "c1", "c2", "R²", "max |residual| ms", "extrapolated"], rows,
                 text_columns=(0, 1, 7))


def crossover_note(summary: dict) -> str:
    cross = summary.get("crossover_attention_over_mlp")
    if cross:
        return f"Attention overtakes the MLP at about {cross:,.0f} tokens (from fits that pass the rule), dashed."
    if summary.get("crossover_refused_because"):
        return f"No crossover reported: {summary['crossover_refused_because']}."
    return f"Attention does not overtake the MLP below {summary['crossover_searched_up_to']:,.0f} tokens."


def sweep_document(sweep: Sweep, place: Place) -> list[str]:
    summary, table_ = sweep.summary, sweep.table
    out = [sweep_facts(sweep), "<h2>TTFT at each length</h2>", length_table(sweep)]
    stacked = figures.stacked_data(table_)
    fig = figure(place, "stacked", stacked, figures.stacked_bars, "TTFT by component and length", index=True)
    out.append(figure_block(place, "TTFT by component and length", fig, frame_table(stacked, index=True),
                            "Median repeat at each length, components stacked in forward order."))
    scaling = table_[table_["component"] != TOTAL].reset_index(drop=True)
    cross = summary.get("crossover_attention_over_mlp")
    fig = figure(place, "scaling", scaling, figures.scaling_chart, summary["fits"], cross, "time against prompt length")
    out.append(figure_block(place, "Scaling and fits", fig, frame_table(scaling),
                            crossover_note(summary) + " The legend gives each fit's R²."))
    out += [note(f"Rule: {summary['fit_rule']}."), fits_table(summary)]
    if summary.get("extrapolated_ttft"):
        out.append("<h2>Extrapolated (not measured)</h2>" + note(
            "Each component's fit beyond the longest length, with its standard error; the TTFT is their sum. A "
            "blank time is a fit the rule refused, with the reason beside it.")
            + frame_table(pd.DataFrame(summary["extrapolated_ttft"]))
            + frame_table(pd.DataFrame(summary["extrapolated"])))
    if summary.get("residuals"):
        out.append("<details><summary>residuals of every fit at every length</summary>"
                   + frame_table(pd.DataFrame(summary["residuals"])) + "</details>")
    out.append("<h2>How far TTFT = k·n + C drifts</h2>" + frame_table(pd.DataFrame(summary["linear_ttft_drift"])))
    out.append(f"<h2>The longest run: {esc(summary['runs'][-1])}</h2>")
    return out
