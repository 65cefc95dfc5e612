"""Terminal rendering of a run diff: flagged rows stand out, the rest stay quiet."""
from __future__ import annotations

import math

from analyzers.diff import Diff
from analyzers.vocabulary import TOTAL


def render_diff(diff: Diff, console) -> None:
    """Flagged rows stand out; the rest stay quiet."""
    from rich.markup import escape
    from rich.table import Table

    table, name_a, name_b = diff.table, diff.name_a, diff.name_b

    grid = Table(title=f"A = {escape(name_a)}\nB = {escape(name_b)}", title_justify="left", pad_edge=False)
    for column in ("component", "A ms", "B ms", "Δ ms", "Δ %", "spread A", "spread B", ""):
        grid.add_column(column, justify="left" if column in ("component", "") else "right")
    flagged = 0
    for row in table.itertuples(index=False):
        pct = "" if math.isnan(row.delta_pct) else f"{row.delta_pct:+.1f}%"
        mark = "changed" if row.flagged else ""
        flagged += bool(row.flagged) and row.component != TOTAL
        grid.add_row(row.component, f"{row.ms_a:,.3f}", f"{row.ms_b:,.3f}", f"{row.delta_ms:+,.3f}", pct,
                     f"{row.spread_a_ms:,.3f}", f"{row.spread_b_ms:,.3f}", mark,
                     style="bold" if row.flagged else None)
    console.print(grid)
    console.print(f"{flagged} component(s) changed beyond the spread of their repeats"
                  if flagged else "no component changed beyond the spread of its repeats")


def diff_json(diff: Diff) -> dict:
    """What `diff --json` prints."""
    return {"a": diff.name_a, "b": diff.name_b, "warnings": diff.warnings, "components": diff.table.to_dict("records")}
