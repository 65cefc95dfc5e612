"""The subcommands beside profiling: models, analyze, calibrate, predict.

`analyze` and `predict` never import torch: they must run on a laptop with
only a run folder, a trace or a config.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from analyzers.render.console import console as make_console
from analyzers.jsonout import dumps
from profiler.errors import ArgParser as _Parser
from profiler.errors import UsageError


def cmd_models(argv: list[str]) -> int:
    from rich.table import Table

    from profiler import catalog

    if argv:
        raise UsageError(f"`ttft-profile models` takes no arguments, got {' '.join(argv)!r}.")
    table = Table(title="built-in models (configs only; weights come from a local folder or the HF cache)",
                  title_justify="left")
    for column in ("name", "type", "layers", "hidden", "heads/kv", "intermediate", "vocab", "max pos"):
        table.add_column(column, justify="left" if column in ("name", "type") else "right", no_wrap=column == "name")
    for name in catalog.builtin_names():
        c = catalog.builtin_entry(name)["config"]
        heads = c["num_attention_heads"]
        table.add_row(name, c["model_type"], str(c["num_hidden_layers"]), str(c["hidden_size"]),
                      f"{heads}/{c.get('num_key_value_heads', heads)}", str(c["intermediate_size"]),
                      str(c["vocab_size"]), str(c.get("max_position_embeddings", "")))
    make_console().print(table)
    print(f"default: {catalog.default_model()}")
    return 0


def cmd_analyze(argv: list[str]) -> int:
    """Re-render a run folder, or attribute any Kineto trace; never imports torch."""
    parser = _Parser(prog="ttft-profile analyze", description=(
        "Break down a saved run folder, or a torch.profiler (Kineto) trace made by ttft-profile or anything else."))
    parser.add_argument("path", type=Path, help="a run folder or a trace (.json or .json.gz)")
    parser.add_argument("--top", type=int, default=10, help="rows in the top-kernel and annotation tables")
    parser.add_argument("--json", action="store_true", help="print the tables as JSON on stdout")
    args = parser.parse_args(argv)
    if args.top < 1:
        raise UsageError(f"--top {args.top} must be at least 1.")
    from analyzers.trace.report import analyze_trace, render_trace_report, trace_report_json
    from analyzers.run import RunFormatError, load_run
    from analyzers.trace.load import TraceFormatError

    if not args.path.exists():
        raise UsageError(f"{args.path} does not exist; pass a run folder or a trace file.")
    if (args.path / "sweep.json").is_file():
        return _analyze_sweep(args.path, args.json)
    try:
        if args.path.is_dir():
            run = load_run(args.path)
            report = None
        else:
            report = analyze_trace(args.path, top=args.top)
    except (RunFormatError, TraceFormatError) as exc:
        raise UsageError.from_error(exc) from None

    if report is None:
        from analyzers.render.terminal import render_table, summary

        if args.json:
            print(dumps(summary(run)))
        else:
            render_table(run, make_console())
    elif args.json:
        print(dumps(trace_report_json(report)))
    else:
        render_trace_report(report, make_console())
    return 0


def _analyze_sweep(folder: Path, as_json: bool) -> int:
    """A sweep folder: its summary again (the per-length runs are folders `analyze` reads too)."""
    import pandas as pd

    try:
        summary = json.loads((folder / "sweep.json").read_text())
        table = pd.read_csv(folder / "sweep.csv")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{folder} is a sweep folder that cannot be read whole ({exc}); run the sweep again.") from None
    if as_json:
        print(dumps(summary))
        return 0

    from analyzers.render.sweep import render_sweep

    render_sweep(table, summary, str(folder), make_console())
    return 0


def cmd_diff(argv: list[str]) -> int:
    """Per-component change between two runs, flagged only outside the spread of their repeats."""
    parser = _Parser(prog="ttft-profile diff", description=(
        "Compare two run folders component by component; a change is flagged only when it is outside "
        "the spread of the repeats."))
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from analyzers.diff import diff_runs
    from analyzers.run import RunFormatError, load_run

    try:
        a, b = load_run(args.run_a), load_run(args.run_b)
    except RunFormatError as exc:
        raise UsageError.from_error(exc) from None
    table = diff_runs(a, b)
    warnings = table.attrs.get("warnings", [])
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        print(dumps({"a": str(args.run_a), "b": str(args.run_b), "warnings": warnings,
                     "components": table.to_dict("records")}))
        return 0

    from analyzers.render.diff import render_diff

    render_diff(table, str(args.run_a), str(args.run_b), make_console())
    return 0


def cmd_report(argv: list[str]) -> int:
    """A self-contained report.html with PNG figures for a run or a sweep folder."""
    parser = _Parser(prog="ttft-profile report", description=(
        "Write report.html (self-contained, opens offline) and PNG figures for a run folder or a sweep folder."))
    parser.add_argument("path", type=Path, help="a run folder or a sweep folder")
    args = parser.parse_args(argv)
    from analyzers.render.html import ReportError, write_report

    try:
        html = write_report(args.path)
    except ReportError as exc:
        raise UsageError.from_error(exc) from None
    print(f"report: {html}")
    return 0
