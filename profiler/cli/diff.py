"""`ttft-profile diff A B`: per-component change, flagged only when the repeats make it unlikely to be noise."""
from __future__ import annotations

import sys
from pathlib import Path

from analyzers.jsonout import dumps
from analyzers.render.console import console
from profiler.cli.errors import ArgParser


def run(argv: list[str]) -> int:
    parser = ArgParser(prog="ttft-profile diff", description=(
        "Compare two run folders component by component; a change is flagged only when a rank test over "
        "the repeats (Mann-Whitney U, Holm-corrected, 5%) says it is unlikely to be noise."))
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from analyzers.diff import compare
    from analyzers.render.diff import diff_json, render_diff
    from analyzers.run import load_run

    diff = compare(load_run(args.run_a), load_run(args.run_b), str(args.run_a), str(args.run_b))
    for line in diff.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        print(dumps(diff_json(diff)))
    else:
        render_diff(diff, console())
    return 0
