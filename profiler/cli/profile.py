"""`ttft-profile [--model M] [--len N] ...`: profile one prefill configuration into a run folder."""
from __future__ import annotations

import os
from pathlib import Path

from analyzers.jsonout import dumps
from analyzers.render.console import console
from profiler.cli.options import profile_parser, settings_from
from profiler.cli.progress import progress_bar, status

TRACES = Path("traces")


def run(argv: list[str]) -> int:
    args = profile_parser().parse_args(argv)
    from analyzers.render.summary import run_json
    from analyzers.render.terminal import render_run
    from analyzers.store import save_run
    from analyzers.tables import compute_tables
    from profiler.runfolder import StagedFolder, check_out, default_run_dir
    from profiler.session import Session

    if args.out is not None:
        check_out(args.out)  # before the model's config is even read
    if args.tp != 1 or os.environ.get("WORLD_SIZE", "1") != "1":  # asked for, or a rank started by torchrun
        from profiler.tp.launch import run_tp

        final = args.out if args.out is not None else default_run_dir(TRACES, args.model, kind=f"tp{args.tp}-n{args.seq_len}")
        return run_tp(settings_from(args, [args.seq_len], ["ttft-profile", *argv]), argv, final, args.json)
    session = Session.prepare(settings_from(args, [args.seq_len], ["ttft-profile", *argv]))
    final = args.out if args.out is not None else default_run_dir(TRACES, session.source.name, args.seq_len)
    with StagedFolder(final) as staged:  # any failure or signal before commit removes it
        session.announce()
        with status(session.build_message):
            session.build()
        with progress_bar("prefill") as update:
            result = session.profile(args.seq_len, staged.path, update)
        result.path = str(staged.path)  # lint reads the trace beside the run until the folder is committed
        tables = compute_tables(result)
        save_run(result, staged.path, tables)
        result.path = str(staged.commit())
        if args.json:
            print(dumps(run_json(tables)))
        else:
            render_run(tables, console(), wide=args.wide)
    return 0
