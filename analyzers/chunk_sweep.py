"""A chunk sweep: one prompt length, several chunk sizes, and the unchunked prefill as the reference.

`chunk_sweep.csv` holds one row per run (the reference first, `chunk` empty there), with the TTFT
(median repeat) and how far it is from the unchunked one; `chunk_sweep.json` the same rows and what
the sweep was. Computed here once and read back by `analyze`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analyzers.components import ttft_stats
from analyzers.errors import InputError
from analyzers.run import Run

COLUMNS = ("chunk", "chunks", "ttft_ms", "ttft_min_ms", "ttft_max_ms", "vs_unchunked_pct", "run")
SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {"seq_len": (int,), "chunks": (list,), "rows": (list,),
                                               "reference_ms": (int, float), "runs": (list,)}


@dataclass(frozen=True)
class ChunkSweep:
    """The table (one row per run, the reference first), the summary (chunk_sweep.json) and the folder."""

    table: pd.DataFrame
    summary: dict
    path: str


def chunk_row(run: Run, folder: str, chunk: int | None) -> dict:
    """A run's row: the chunk size asked for (None: the unchunked reference; one not below the prompt ran
    unchunked, in one chunk), its chunk count and TTFT (p50, min, max)."""
    stats = ttft_stats(run)
    return {"chunk": chunk, "chunks": len(run.chunk_tokens) or 1, "ttft_ms": stats["p50_ms"],
            "ttft_min_ms": stats["min_ms"], "ttft_max_ms": stats["max_ms"], "run": folder}


def sweep_table(rows: list[dict]) -> pd.DataFrame:
    """The rows with `vs_unchunked_pct` = 100·(TTFT / unchunked TTFT − 1); the reference row comes first."""
    if not rows or rows[0]["chunk"] is not None:
        raise ValueError("a chunk sweep's first row is its unchunked reference")
    reference = rows[0]["ttft_ms"]
    out = [{**r, "vs_unchunked_pct": 100.0 * (r["ttft_ms"] / reference - 1.0) if reference else math.nan}
           for r in rows]
    return pd.DataFrame(out, columns=list(COLUMNS))


def summarise(table: pd.DataFrame, seq_len: int) -> dict:
    """The body of chunk_sweep.json: the length, the chunk sizes, the reference TTFT and the rows."""
    rows = table.to_dict("records")
    for r in rows:  # pandas holds the reference's missing chunk as NaN; JSON says null
        r["chunk"], r["chunks"] = None if pd.isna(r["chunk"]) else int(r["chunk"]), int(r["chunks"])
    return {"seq_len": int(seq_len), "chunks": [r["chunk"] for r in rows[1:]], "reference_ms": rows[0]["ttft_ms"],
            "rows": rows, "runs": [r["run"] for r in rows]}


def load_chunk_sweep(folder: str | Path) -> ChunkSweep:
    """A chunk-sweep folder read back; one sentence when it is not whole."""
    folder = Path(folder)
    source = folder / "chunk_sweep.json"
    try:
        summary = json.loads(source.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{source} cannot be read as a chunk sweep ({type(exc).__name__}); "
                         "run the chunk sweep again.") from None
    if not isinstance(summary, dict):
        raise InputError(f"{source} holds a JSON {type(summary).__name__}, not a chunk sweep; run the sweep again.")
    for name, types in SUMMARY_FIELDS.items():
        if not isinstance(summary.get(name), types) or isinstance(summary.get(name), bool):
            raise InputError(f"{source}: field '{name}' is missing or not {types[0].__name__}; it was cut short "
                             "or hand-edited, so run the chunk sweep again.")
    rows = summary["rows"]
    if not rows or not all(isinstance(r, dict) and all(k in r for k in COLUMNS) for r in rows):
        raise InputError(f"{source}: field 'rows' holds a row without {', '.join(COLUMNS)}; run the sweep again.")
    return ChunkSweep(pd.DataFrame(rows, columns=list(COLUMNS)), summary, str(folder))
