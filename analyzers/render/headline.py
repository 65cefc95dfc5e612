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


def headline_sentence(tables) -> str:
    stats = tables.stats
    parts = [f"TTFT {ms(stats['p50_ms'])} ms"]
    if tables.floor_ms is not None:
        parts[0] += f" against a {ms(tables.floor_ms)} ms floor"
    gap = biggest_gap(tables)
    if gap is not None:
        parts.append(f"the biggest gap is {gap[0]}, {ms(gap[1])} ms above its floor")
    if tables.findings:
        parts.append(f"fix first: {tables.findings[0].title}")
    return "; ".join(parts) + "."
