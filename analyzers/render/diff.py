"""Terminal rendering of a run diff: flagged rows stand out, the rest stay quiet."""
from __future__ import annotations

import math

from analyzers.diff import MIN_EFFECT, Diff
from analyzers.vocabulary import TOTAL


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.01 else f"{value:.2f}"


def render_diff(diff: Diff, console) -> None:
    """Flagged rows stand out; the rest stay quiet; the test and each noisy run are said beneath."""
    from rich.markup import escape
    from rich.table import Table

    table, name_a, name_b = diff.table, diff.name_a, diff.name_b

    grid = Table(title=f"A = {escape(name_a)}\nB = {escape(name_b)}", title_justify="left", pad_edge=False)
    for column in ("component", "A ms", "B ms", "Δ ms", "Δ %", "spread A", "spread B", "p", "p Holm", ""):
        grid.add_column(column, justify="left" if column in ("component", "") else "right")
    flagged = candidates = 0
    for row in table.itertuples(index=False):
        pct = "" if math.isnan(row.delta_pct) else f"{row.delta_pct:+.1f}%"
        mark = "changed" if row.flagged else "changed?" if row.significant else ""
        flagged += bool(row.flagged) and row.component != TOTAL
        candidates += bool(row.significant and not row.flagged) and row.component != TOTAL
        grid.add_row(row.component, f"{row.ms_a:,.3f}", f"{row.ms_b:,.3f}", f"{row.delta_ms:+,.3f}", pct,
                     f"{row.spread_a_ms:,.3f}", f"{row.spread_b_ms:,.3f}", _p(row.p_value), _p(row.p_holm), mark,
                     style="bold" if row.flagged else None)
    console.print(grid)
    test = diff.test
    if test.can_flag:
        changed = f"{flagged} component(s) changed beyond the noise of their repeats" if flagged else \
            "no component changed beyond the noise of its repeats"
        if candidates:
            why = ("a run is noisy (below)" if not diff.flags_trusted else
                   f"each moved less than {100 * MIN_EFFECT:.0f}%, within what separate runs of one configuration drift")
            changed += (f"; {candidates} more differ beyond their repeats' noise but {why}: repeats within a run "
                        "cannot show the machine drifting between runs, so they are candidates (changed?), not changes")
        console.print(changed, markup=False)
    console.print(test.note, markup=False)
    for label, noise in (("A", diff.noise_a), ("B", diff.noise_b)):
        if noise.noisy:
            console.print(f"run {label} is {noise.verdict}", markup=False)


def diff_json(diff: Diff) -> dict:
    """What `diff --json` prints."""
    return {"a": diff.name_a, "b": diff.name_b, "warnings": diff.warnings, "test": diff.test.to_dict(),
            "flags_trusted": diff.flags_trusted,
            "noise": {"a": diff.noise_a.to_dict(), "b": diff.noise_b.to_dict()},
            "components": diff.table.to_dict("records")}
