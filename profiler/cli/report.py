"""`ttft-profile report DIR`: a self-contained report.html with PNG figures for a run or a sweep folder."""
from __future__ import annotations

from pathlib import Path

from profiler.cli.errors import ArgParser
from profiler.cli.progress import status


def run(argv: list[str]) -> int:
    parser = ArgParser(prog="ttft-profile report", description=(
        "Write report.html (self-contained, opens offline) and PNG figures for a run folder or a sweep folder."))
    parser.add_argument("path", type=Path, help="a run folder or a sweep folder")
    args = parser.parse_args(argv)
    from analyzers.render.html import write_report

    # matplotlib draws every figure: seconds, so a terminal sees what it waits for
    with status(f"drawing the report of {args.path} (figures with matplotlib)"):
        page = write_report(args.path)
    print(f"report: {page}")
    return 0
