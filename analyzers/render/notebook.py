"""A run in a Jupyter cell and at the Python prompt: the report's table, and a one-line repr.

`Run`, `RunTables` and `GenerateRun` hand their `_repr_html_` and `__repr__` to these functions;
the HTML is the report's own breakdown and findings (analyzers.render.report_run), so a
notebook shows the numbers the report and the terminal show, computed once.
"""
from __future__ import annotations

from analyzers.render.fmt import ms


def run_repr(run) -> str:
    """`Run(model, n, b, dtype on device: TTFT p50 X ms over R repeats, folder)`: what, where, how long."""
    return f"Run({run_summary(run)})"


def run_summary(run) -> str:
    """The inside of `run_repr`, for the objects that show a run within their own repr."""
    from analyzers.components import ttft_stats

    parts = [run.model, f"n={run.seq_len}", f"b={run.batch}", f"{run.dtype} on {run.device}"]
    if run.tp > 1:
        parts.append(f"tp={run.tp}")
    if run.chunk:
        parts.append(f"chunk={run.chunk}")
    if run.padding:
        parts.append(f"padding {run.padding['pad_tokens']}/{run.padding['tokens']}")
    summary = ", ".join(parts)
    if run.ttft_ns:
        stats = ttft_stats(run)
        summary += f": TTFT p50 {ms(stats['p50_ms'])} ms over {stats['repeats']} repeats"
    if run.path:
        summary += f", {run.path}"
    return summary


def tables_repr(tables) -> str:
    return f"RunTables({run_summary(tables.run)}; {len(tables.findings)} finding(s))"


def tables_html(tables) -> str:
    """The headline, the formatted breakdown and the findings, as the report shows them."""
    from analyzers.render.headline import headline_sentence
    from analyzers.render.report_parts import esc
    from analyzers.render.report_run import breakdown_table, findings

    return (f"<div class='ttft-profile'><p><strong>{esc(headline_sentence(tables))}</strong></p>"
            f"{breakdown_table(tables)}{findings(tables)}</div>")


def run_html(run) -> str:
    from analyzers.tables import compute_tables

    return tables_html(compute_tables(run))
