"""A chunked prefill's TTFT per chunk: the lines under the breakdown and the `chunks` key of `--json`.

The breakdown above them stays the whole TTFT. Chunk 0 holds the copy of the ids to the device, the
last chunk sampling and the copy of the token back, so the chunks' times add up to the TTFT of the
same (median) repeat. Per-chunk components exist where the recorder kept host-clock times per chunk.
"""
from __future__ import annotations

from analyzers.components import median_repeat
from analyzers.run import Run

# the components named on a chunk's line, where the run has per-chunk times
SHOWN = ("attention", "mlp")


def chunk_table(run: Run) -> list[dict]:
    """One row per chunk of the median repeat: chunk, first_token, tokens, ms, share of the TTFT and,
    where recorded, ms per component (`components`); empty for an unchunked run."""
    if not run.chunk or not run.chunk_ns:
        return []
    repeat = median_repeat(run)
    times, ttft = run.chunk_ns[repeat], run.ttft_ns[repeat]
    per_component: dict[int, dict[str, float]] = {}
    for row in run.chunk_component_ns:
        if row["repeat"] == repeat:
            parts = per_component.setdefault(int(row["chunk"]), {})
            parts[row["component"]] = parts.get(row["component"], 0.0) + row["ns"] / 1e6
    tokens = run.chunk_tokens or [run.chunk] * len(times)
    starts = [sum(tokens[:i]) for i in range(len(tokens))]
    return [{"chunk": i, "first_token": starts[i], "tokens": tokens[i], "ms": ns / 1e6,
             "share": ns / ttft if ttft else 0.0, "components": per_component.get(i, {})}
            for i, ns in enumerate(times)]


def chunks_json(run: Run) -> dict | None:
    """The `chunks` key of `--json`: the chunk size, the median repeat's chunks, and their total (its TTFT)."""
    rows = chunk_table(run)
    if not rows:
        return None
    return {"chunk": run.chunk, "count": len(rows), "rows": rows, "total_ms": sum(r["ms"] for r in rows),
            "ttft_ms": run.ttft_ns[median_repeat(run)] / 1e6}


SHOW_AT_MOST = 16  # chunks listed one per line; beyond, the first and last few (every one is in --json)


def chunk_lines(run: Run) -> list[str]:
    """`chunk i: tokens a–b, ms (share)` per chunk, then the total; nothing for an unchunked run."""
    rows = chunk_table(run)
    if not rows:
        return []
    lines = [f"chunked prefill: {len(rows)} chunks of {run.chunk:,} tokens (the first chunk includes copying "
             "the ids in; the last, sampling and copying the token out)"]
    shown = rows if len(rows) <= SHOW_AT_MOST else rows[:8] + rows[-4:]
    for r in shown:
        if r is rows[-4] and shown is not rows:
            lines.append(f"  ... {len(rows) - 12:,} more chunks (every one in --json) ...")
        parts = " · ".join(f"{c} {r['components'][c]:,.2f} ms" for c in SHOWN if c in r["components"])
        lines.append(f"  chunk {r['chunk']}: tokens {r['first_token']:,}–{r['first_token'] + r['tokens'] - 1:,} "
                     f"({r['tokens']:,})  {r['ms']:,.2f} ms  {100 * r['share']:.1f}%" + (f"  [{parts}]" if parts else ""))
    lines.append(f"  total: {sum(r['ms'] for r in rows):,.2f} ms = TTFT of the median repeat")
    return lines


def render_chunks(run: Run, console) -> None:
    """The per-chunk lines under the breakdown (nothing for an unchunked run)."""
    for line in chunk_lines(run):
        console.print(line, markup=False)
