"""The one sentence a run opens with, in the terminal and the report alike.

TTFT, its floor, the biggest gap (the component furthest above its own floor, in ms) and the
first finding: the answer to "what should I fix first?" before any table.
"""
from __future__ import annotations

from analyzers.render.fmt import ms


def biggest_gap(tables) -> tuple[str, float] | None:
    """(component, ms above its floor) of the roofline's largest headroom; None without a roofline."""
    roof = tables.roofline
    if roof is None or not len(roof):
        return None
    row = roof.sort_values("headroom_ms", ascending=False).iloc[0]
    return str(row["component"]), float(row["headroom_ms"])


def largest_part(tables) -> tuple[str, float, float] | None:
    """(component, ms, share) of the largest present row: the headline's answer without a roofline."""
    present = tables.breakdown[tables.breakdown["present"]]
    if not len(present):
        return None
    row = present.sort_values("ms", ascending=False).iloc[0]
    return str(row["component"]), float(row["ms"]), float(row["share"])


def headline_sentence(tables) -> str:
    """One sentence, plain text (no markup): the terminal prints it first, the report above its figures."""
    stats = tables.stats
    parts = [f"TTFT {ms(stats['p50_ms'])} ms"]
    if tables.floor_ms is not None:
        parts[0] += f", floor {ms(tables.floor_ms)} ms"
    gap = biggest_gap(tables)
    biggest = None if gap is not None else largest_part(tables)
    if gap is not None:
        parts.append(f"biggest gap: {gap[0]}, {ms(gap[1])} ms above its floor")
    elif biggest is not None:  # no roofline, so no floor to measure a gap from: the largest part instead
        parts.append(f"largest part: {biggest[0]}, {ms(biggest[1])} ms ({100 * biggest[2]:.1f}%)")
    if tables.findings:
        parts.append(f"first finding: {tables.findings[0].title}")
    return "; ".join(parts) + "."
