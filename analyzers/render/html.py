"""`ttft-profile report DIR`: one self-contained report.html, and its figures as PNG + CSV.

Images are embedded as data URIs and styles inline, so the file opens
offline, mailed or archived, with nothing beside it. Each figure's data is
the CSV next to its PNG and the table under it in the page.
"""
from __future__ import annotations

import base64
import errno
import html
import shutil
from pathlib import Path

import pandas as pd

from analyzers.atomic import WriteError, write_failure, write_text
from analyzers.cost.roofline import effective_ceilings
from analyzers.errors import InputError
from analyzers.render import figures
from analyzers.run import load_run
from analyzers.scaling import fit_components
from analyzers.sweep import load_sweep
from analyzers.tables import RunTables, compute_tables
from analyzers.vocabulary import REMAINDERS, TOTAL

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#212121}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #e0e0e0}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{padding:.2rem .6rem;border-bottom:1px solid #eee}
th{text-align:left;background:#fafafa}td{text-align:right}td:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}.note{color:#616161;font-size:.85rem}
details{margin:.3rem 0 1rem}summary{cursor:pointer;color:#1565c0;font-size:.85rem}
"""


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class ReportError(InputError):
    """A folder that is neither a run nor a sweep, or one with files missing."""


def _figure(folder: Path, name: str, data: pd.DataFrame, draw, *draw_args) -> tuple[str, pd.DataFrame]:
    """Draw a PNG and save its data as CSV beside it; return the PNG as a data URI."""
    png, csv = folder / f"{name}.png", folder / f"{name}.csv"
    tmp = folder / f".{name}.tmp.png"
    try:
        draw(data, tmp, *draw_args)
        tmp.replace(png)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failure(png, exc) from None
    write_text(csv, data.to_csv(float_format="%.6g"))
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode(), data


def _table(frame: pd.DataFrame, index: bool = False) -> str:
    return frame.to_html(index=index, float_format=lambda v: f"{v:,.4g}", border=0, na_rep="")


def _section(title: str, uri: str | None, data: pd.DataFrame | None, caption: str = "", index: bool = False) -> str:
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if caption:
        parts.append(f"<p class='note'>{html.escape(caption)}</p>")
    if uri:
        parts.append(f"<img alt='{html.escape(title)}' src='{uri}'>")
    if data is not None:
        parts.append(f"<details><summary>the data behind this figure</summary>{_table(data, index)}</details>")
    return "\n".join(parts)


def _run_sections(tables: RunTables, folder: Path, prefix: str = "") -> list[str]:
    run, stats = tables.run, tables.stats
    out = []
    uri, data = _figure(folder, f"{prefix}components", figures.waterfall_data(tables.breakdown), figures.waterfall,
                        f"{run.model} · n={run.seq_len} · TTFT p50 {stats['p50_ms']:,.2f} ms")
    out.append(_section("TTFT by component", uri, data,
                        "Exclusive time of the median repeat; the bars end at the measured TTFT."))
    roof = tables.roofline
    if roof is None and run.ceilings:
        out.append(f"<p class='note'>{html.escape(tables.roofline_note or '')}</p>")
    if roof is not None:
        ceilings, _note = effective_ceilings(run)  # the roofs the table used, clock-scaled where measured
        peak = ceilings.peak_flops(run.dtype) or max(ceilings.flops_per_s.values())
        uri, data = _figure(folder, f"{prefix}roofline", figures.roofline_data(roof), figures.roofline_chart,
                            peak, ceilings.bytes_per_s, f"roofline · {ceilings.source}")
        out.append(_section("Roofline", uri, data, "Each component under the device's roofs; the label is its "
                            "efficiency (floor / measured)."))
        shown = roof[["component", "flops", "bytes", "intensity", "bound", "floor_ms", "measured_ms",
                      "efficiency", "headroom_ms"]].astype({"efficiency": object})
        # above 1 the ceiling is wrong, not the kernel fast: never a plain number (the note says which ceiling)
        shown.loc[roof["efficiency"] > 1, "efficiency"] = "> 100%!"
        if tables.roofline_note:
            out.append(f"<p class='note'>{html.escape(tables.roofline_note)}</p>")
        out.append(_table(shown))
    layers = figures.heatmap_data(tables.layers)
    if layers.shape[1] > 0:
        uri, data = _figure(folder, f"{prefix}layers", layers, figures.heatmap, "ms per component and layer")
        out.append(_section("Per-layer heatmap", uri, data, "A layer that costs more than its neighbours shows as "
                            "a brighter cell.", index=True))
    if tables.extrapolation is not None:
        out.append(_section(f"Full-model estimate ({run.layers_built} of {run.layers_total} layers measured)",
                            None, None, "Per-layer components scaled by L/K, the rest unchanged: an estimate."))
        out.append(_table(tables.extrapolation))
    return out


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """The breakdown without the remainder row this run's clock does not use (other or host_gap)."""
    return table[table["present"] | ~table["component"].isin(REMAINDERS)]


def _head(title: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>")


def _run_report(folder: Path) -> str:
    tables = compute_tables(load_run(folder))
    run, stats = tables.run, tables.stats
    figs = folder / "figures"
    figs.mkdir(exist_ok=True)
    body = [_head(f"TTFT of {run.model} at {run.seq_len:,} tokens"),
            f"<p>{html.escape(run.device_name)} · {run.dtype} · attn={html.escape(run.attn)} · TTFT p50 "
            f"{stats['p50_ms']:,.3f} ms (min {stats['min_ms']:,.3f}, max {stats['max_ms']:,.3f}, "
            f"{stats['repeats']} repeats) · cold {stats['cold_ms']:,.3f} ms</p>",
            _table(_shown(tables.breakdown)), *_run_sections(tables, figs)]
    return "\n".join(body) + "</body></html>\n"


def _sweep_report(folder: Path) -> str:
    sweep = load_sweep(folder)
    summary, table = sweep.summary, sweep.table
    figs = folder / "figures"
    figs.mkdir(exist_ok=True)
    fits = fit_components(table[table["component"] != TOTAL])
    cross = summary.get("crossover_attention_over_mlp")
    body = [_head(f"TTFT of {summary.get('model', '')} from {table['seq_len'].min():,} to "
                  f"{table['seq_len'].max():,} tokens")]
    uri, data = _figure(folder / "figures", "stacked", figures.stacked_data(table), figures.stacked_bars,
                        "TTFT by component and length")
    body.append(_section("TTFT by component and length", uri, data, "Median repeat at each length.", index=True))
    scaling = table[table["component"] != TOTAL].reset_index(drop=True)
    uri, _ = _figure(figs, "scaling", scaling, figures.scaling_chart, fits, cross, "time against prompt length")
    if cross:
        note = f"Attention overtakes the MLP at about {cross:,.0f} tokens (from fits that pass the rule)."
    elif summary.get("crossover_refused_because"):
        note = f"No crossover reported: {summary['crossover_refused_because']}."
    else:
        note = f"Attention does not overtake the MLP below {summary['crossover_searched_up_to']:,.0f} tokens."
    body.append(_section("Scaling and fits", uri, scaling, note))
    body.append(f"<p class='note'>Rule: {html.escape(summary['fit_rule'])}.</p>")
    body.append(_table(pd.DataFrame(summary["fits"])))
    if summary.get("extrapolated_ttft"):
        body.append("<h2>Extrapolated (not measured)</h2><p class='note'>Each component's fit beyond the longest "
                    "length, with its standard error; the TTFT is their sum. A blank time is a fit the rule "
                    "refused, with the reason beside it.</p>"
                    + _table(pd.DataFrame(summary["extrapolated_ttft"])) + _table(pd.DataFrame(summary["extrapolated"])))
    if summary.get("residuals"):
        body.append("<details><summary>residuals of every fit at every length</summary>"
                    + _table(pd.DataFrame(summary["residuals"])) + "</details>")
    body.append("<h2>How far TTFT = k·n + C drifts</h2>" + _table(pd.DataFrame(summary["linear_ttft_drift"])))
    longest = folder / summary["runs"][-1]
    body.append(f"<h2>Longest run: {html.escape(summary['runs'][-1])}</h2>")
    body += _run_sections(compute_tables(load_run(longest)), figs, prefix=f"{summary['runs'][-1]}-")
    return "\n".join(body) + "</body></html>\n"


def write_report(path: str | Path) -> Path:
    """Write report.html into a run or sweep folder and return its path.

    A write that fails (a full disk) is one sentence naming the file, and the
    figures folder this call created is removed: no half a report is left.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ReportError(f"{folder} is not a folder; pass a run folder or a sweep folder.")
    new_figures = not (folder / "figures").exists()
    try:
        return _write_page(folder)
    except BaseException:
        if new_figures:
            shutil.rmtree(folder / "figures", ignore_errors=True)
        raise


def _write_page(folder: Path) -> Path:
    try:
        if (folder / "sweep.json").exists():
            page = _sweep_report(folder)
        elif (folder / "run.json").exists():
            page = _run_report(folder)
        else:
            raise ReportError(f"{folder} holds neither run.json nor sweep.json, so it is not a run or a sweep folder.")
    except (InputError, OSError, KeyError, ValueError) as exc:
        if isinstance(exc, ReportError | WriteError):
            raise
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS and exc.filename:
            raise write_failure(exc.filename, exc) from None
        raise ReportError(f"{folder} could not be read whole ({str(exc).rstrip('.')}); "
                          "re-run the profile that made it.") from None
    out = folder / "report.html"
    write_text(out, page)
    return out
