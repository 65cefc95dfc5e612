"""A chunk sweep on the terminal and as a figure: TTFT against chunk size, the unchunked prefill as reference."""
from __future__ import annotations

import io
import math

import pandas as pd

from analyzers.atomic import write_bytes
from analyzers.chunk_sweep import ChunkSweep

FIGURE = "chunk_sweep.png"


def render_chunk_sweep(sweep: ChunkSweep, console) -> None:
    """One row per run: chunk size, chunks, TTFT and how far it is from the unchunked prefill."""
    from rich.table import Table

    summary = sweep.summary
    grid = Table(title=f"{summary.get('model', '')} chunked prefill at {summary['seq_len']:,} tokens",
                 title_justify="left", pad_edge=False)
    for column in ("chunk", "chunks", "TTFT ms", "min ms", "max ms", "vs unchunked"):
        grid.add_column(column, justify="right")
    for r in sweep.table.itertuples(index=False):
        unchunked = pd.isna(r.chunk)
        grid.add_row("unchunked" if unchunked else f"{int(r.chunk):,}", f"{int(r.chunks):,}", f"{r.ttft_ms:,.2f}",
                     f"{r.ttft_min_ms:,.2f}", f"{r.ttft_max_ms:,.2f}",
                     "reference" if unchunked else _versus(r))
    console.print(grid)
    if any(int(r.chunks) == 1 for r in sweep.table.itertuples(index=False) if not pd.isna(r.chunk)):
        console.print("a chunk not below the prompt runs in one forward, the reference's computation: its "
                      "difference is the run-to-run noise", markup=False)
    console.print(f"TTFT is the median repeat of each run; figure: {FIGURE}; sweep folder: {sweep.path}", markup=False)


def chunk_sweep_json(sweep: ChunkSweep) -> dict:
    """What `sweep --chunk --json` and `analyze CHUNK_SWEEP --json` print: the summary and where it lives."""
    return {**sweep.summary, "sweep_dir": sweep.path}


def chunk_figure(table: pd.DataFrame, path, title: str) -> None:
    """TTFT (median, min–max bars) against chunk size on a log2 axis; the unchunked TTFT as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chunked = table[table["chunk"].notna()]
    reference = float(table[table["chunk"].isna()]["ttft_ms"].iloc[0])
    fig, ax = plt.subplots(figsize=(7, 4))
    sizes = chunked["chunk"].astype(float)
    low, high = chunked["ttft_ms"] - chunked["ttft_min_ms"], chunked["ttft_max_ms"] - chunked["ttft_ms"]
    ax.errorbar(sizes, chunked["ttft_ms"], yerr=[low, high], marker="o", capsize=3, color="#1565C0",
                label="chunked prefill")
    ax.axhline(reference, color="#212121", linestyle="--", linewidth=1, label=f"unchunked ({reference:,.2f} ms)")
    if len(sizes):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(sizes), [f"{int(s):,}" for s in sizes])
    top = max([reference, *chunked["ttft_max_ms"]])
    ax.set_ylim(0, top * 1.15 if math.isfinite(top) and top > 0 else 1)
    ax.set_xlabel("chunk size (tokens)")
    ax.set_ylabel("TTFT ms (median repeat)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def _versus(row) -> str:
    """The change against the unchunked run; a one-chunk run is that very computation, so only noise."""
    change = f"{row.vs_unchunked_pct:+.1f}%"
    return f"{change} (noise)" if int(row.chunks) == 1 else change
