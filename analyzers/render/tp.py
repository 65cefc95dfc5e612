"""A tensor-parallel run on the terminal and as `--json`: every number from `TPTables` (analyzers.tp).

The table reads like a run's breakdown (component, ms, share), with the slowest rank beside the
mean, because in TP the slowest shard sets the pace; the lines beneath it give each rank's own
TTFT split into communication and compute, and the skew: how long the fastest rank waits.
"""
from __future__ import annotations

from analyzers.render.fmt import ms, plain, share
from analyzers.render.terminal import headline
from analyzers.tp import TPTables
from analyzers.vocabulary import REMAINDERS


def _grid(tables: TPTables):
    from rich.table import Table

    slowest = tables.slowest_ttft_rank
    grid = Table(show_footer=True, pad_edge=False)
    grid.add_column("component", footer="TTFT (p50)")
    grid.add_column("mean ms", justify="right", footer=ms(tables.mean_ttft_ms))
    grid.add_column("slowest ms", justify="right", footer=ms(tables.stats[slowest]["p50_ms"]))
    grid.add_column("rank", justify="right", footer=str(slowest))
    grid.add_column("share", justify="right", footer=share(tables.mean_ttft_share))
    for row in tables.components.itertuples(index=False):
        if not row.present:
            if row.component not in REMAINDERS:
                grid.add_row(row.component, "absent", "", "", "", style="dim")
            continue
        grid.add_row(row.component, ms(row.mean_ms), ms(row.slowest_ms), str(row.slowest_rank), share(row.share))
    return grid


def rank_lines(tables: TPTables) -> list[str]:
    """One line per rank (TTFT, communication, compute), then the skew and rank 0's TTFT."""
    lines = []
    for row in tables.ranks.itertuples(index=False):
        host = f" on {plain(row.host)}" if row.host else ""
        # the rank the others wait for: the most compute (its TTFT need not be the largest, as waiting
        # in collectives pads the others' TTFT up to it)
        mark = " (most compute: the others wait for it)" if row.slowest and len(tables.ranks) > 1 else ""
        lines.append(f"rank {row.rank}{host}: TTFT {ms(row.ttft_ms)} ms = communication "
                     f"{ms(row.communication_ms)} + compute {ms(row.compute_ms)} ms{mark}")
    skew = tables.skew
    if len(tables.ranks) > 1:
        lines.append(f"rank skew {ms(skew.ms)} ms: rank {skew.fastest} waits for rank {skew.slowest} in collectives")
    repeats = tables.stats[0]["repeats"]
    lines.append(f"TTFT as rank 0 sees it: {ms(tables.ttft_ms)} ms (p50 of {repeats} repeat{'s' * (repeats != 1)})")
    diff = tables.tp_run.logits_max_abs_diff
    if diff is not None:
        lines.append(f"logits max abs diff: {diff:.3g}")
    return lines


def render_tp(tables: TPTables, console) -> None:
    """Print the TP breakdown, the per-rank lines and where the merged trace is."""
    from rich.markup import escape

    tp_run, run = tables.tp_run, tables.tp_run.runs[0]
    console.print(f"[bold]{escape(headline(run))}[/] · n={run.seq_len} b={run.batch} · {run.dtype} · "
                  f"tp={tp_run.tp} ({escape(tp_run.backend)})")
    console.print(f"{run.device}: {run.device_name}", markup=False)
    console.print(_grid(tables))
    for line in rank_lines(tables):
        console.print(line, markup=False)
    missing = [r for r in tp_run.ranks if tp_run.trace_path(r) is None]
    if tp_run.merged_trace is not None:
        console.print(f"merged trace: {tp_run.merged_trace}", markup=False)
    if missing and len(missing) < tp_run.tp:
        console.print(f"no trace from rank {', '.join(map(str, missing))}", markup=False)
    console.print(f"TP folder: {tp_run.path}", markup=False)


def tp_json(tables: TPTables) -> dict:
    """What `analyze TP_FOLDER --json` prints: every number of the view."""
    tp_run, run = tables.tp_run, tables.tp_run.runs[0]
    skew = tables.skew
    return {
        "model": run.model, "seq_len": run.seq_len, "batch": run.batch, "dtype": run.dtype, "device": run.device,
        "tp": tp_run.tp, "backend": tp_run.backend, "hosts": {str(r): h for r, h in (tp_run.hosts or {}).items()},
        "clock_offsets_ns": {str(r): v for r, v in tp_run.clock_offsets_ns.items()},
        "logits_max_abs_diff": tp_run.logits_max_abs_diff,
        "ttft_ms": tables.ttft_ms,  # rank 0's p50
        "mean_ttft_ms": tables.mean_ttft_ms,
        "mean_ttft_share": tables.mean_ttft_share,  # mean_ttft_ms / ttft_ms: the sum of the components' share
        "slowest_ttft_rank": tables.slowest_ttft_rank,
        "ttft": {str(r): s for r, s in tables.stats.items()},
        "components": tables.components.to_dict("records"),
        "ranks": tables.ranks.to_dict("records"),
        "skew": {"ms": skew.ms, "slowest_rank": skew.slowest, "fastest_rank": skew.fastest},
        "traces": {str(r): None if (p := tp_run.trace_path(r)) is None else str(p) for r in tp_run.ranks},
        "merged_trace": None if tp_run.merged_trace is None else str(tp_run.merged_trace),
        "tp_dir": str(tp_run.path),
    }


def show_tp(folder, as_json: bool) -> None:
    """A TP folder on stdout, as `analyze` and `ttft-profile --tp` both show it: the table or its JSON."""
    from analyzers.jsonout import dumps
    from analyzers.render.console import console
    from analyzers.tp import load_tp, tp_tables

    tables = tp_tables(load_tp(folder))
    if as_json:
        print(dumps(tp_json(tables)))
    else:
        render_tp(tables, console())
