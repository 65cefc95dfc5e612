"""`ttft-profile analyze PATH`: a run folder, a sweep folder, or any Kineto trace; never imports torch."""
from __future__ import annotations

from pathlib import Path

from analyzers.errors import InputError, ParameterError
from analyzers.jsonout import dumps
from analyzers.render.console import console
from profiler.cli.errors import ArgParser
from profiler.cli.options import add_wide


def run(argv: list[str]) -> int:
    parser = ArgParser(prog="ttft-profile analyze", description=(
        "Break down a saved run folder, sweep folder or tensor-parallel (TP) folder, or a torch.profiler (Kineto) "
        "trace made by ttft-profile or anything else."))
    parser.add_argument("path", type=Path, help="a run, sweep or TP folder, or a trace (.json or .json.gz)")
    parser.add_argument("--top", type=int, default=10, help="rows in the top-kernel and annotation tables")
    parser.add_argument("--json", action="store_true", help="print the tables as JSON on stdout")
    add_wide(parser)
    parser.add_argument("--max-trace-mb", type=float, default=None,
                        help="refuse a trace that decompresses past this many MB (default: 2048); "
                             "a guard against gzip bombs, raise it for a genuinely huge trace")
    args = parser.parse_args(argv)
    if args.top < 1:
        raise ParameterError("top", args.top, "must be at least 1")
    if args.max_trace_mb is not None and not args.max_trace_mb > 0:
        raise ParameterError("max_trace_mb", args.max_trace_mb, "must be positive", "the default is 2048")
    if not args.path.exists():
        raise InputError(f"{args.path} does not exist; pass a run folder or a trace file.")
    if (args.path / "tp.json").is_file():
        from analyzers.render.tp import show_tp

        show_tp(args.path, args.json)
        return 0
    if (args.path / "sweep.json").is_file():
        return _sweep(args.path, args.json)
    if (args.path / "chunk_sweep.json").is_file():
        return _chunk_sweep(args.path, args.json)
    if args.path.is_dir():
        if (args.path / "run.json").is_file():
            return _run_folder(args.path, args.json, args.wide)
        return _ranks(args.path, args.json, _max_bytes(args))
    return _trace(args.path, args.top, args.json, _max_bytes(args))


def _max_bytes(args) -> int | None:
    return None if args.max_trace_mb is None else max(1, int(args.max_trace_mb * 2**20))


def _run_folder(path: Path, as_json: bool, wide: bool = False) -> int:
    from analyzers.render.summary import run_json
    from analyzers.render.terminal import render_run
    from analyzers.run import load_run
    from analyzers.tables import compute_tables

    tables = compute_tables(load_run(path))
    if as_json:
        print(dumps(run_json(tables)))
    else:
        render_run(tables, console(), wide=wide)
    return 0


def _ranks(path: Path, as_json: bool, max_bytes: int | None) -> int:
    """A folder of per-rank traces, as torch.distributed runs write them; not a run folder (no run.json)."""
    from analyzers.render.trace import ranks_json, render_ranks
    from analyzers.trace.link import link
    from analyzers.trace.load import load_trace
    from analyzers.trace.ranks import analyze_ranks

    ranks = analyze_ranks(path, analyze=lambda trace: link(load_trace(trace, max_bytes=max_bytes)))
    if as_json:
        print(dumps(ranks_json(ranks)))
    else:
        render_ranks(ranks, console())
    return 0


def _sweep(path: Path, as_json: bool) -> int:
    """The sweep's summary again (its per-length runs are folders `analyze` reads too)."""
    from analyzers.render.sweep import render_sweep, sweep_json
    from analyzers.sweep import load_sweep

    sweep = load_sweep(path)
    if as_json:
        print(dumps(sweep_json(sweep)))
    else:
        render_sweep(sweep, console())
    return 0


def _chunk_sweep(path: Path, as_json: bool) -> int:
    """A chunk sweep's table again (its runs, the unchunked one included, are folders `analyze` reads too)."""
    from analyzers.chunk_sweep import load_chunk_sweep
    from analyzers.render.chunk_sweep import chunk_sweep_json, render_chunk_sweep

    sweep = load_chunk_sweep(path)
    if as_json:
        print(dumps(chunk_sweep_json(sweep)))
    else:
        render_chunk_sweep(sweep, console())
    return 0


def _trace(path: Path, top: int, as_json: bool, max_bytes: int | None) -> int:
    from analyzers.render.trace import render_trace, trace_json
    from analyzers.trace.report import analyze_trace

    report = analyze_trace(path, top=top, max_bytes=max_bytes)
    if as_json:
        print(dumps(trace_json(report)))
    else:
        render_trace(report, console())
    return 0
