"""`ttft-profile sweep`: several prompt lengths, one process, one model build.

Each length gets a run folder of its own inside the sweep folder, so every
tool that reads a run reads these too; `sweep.csv` holds the long table the
fits are made from (analyzers.sweep).
"""
from __future__ import annotations

from analyzers.errors import InputError
from analyzers.jsonout import dumps
from analyzers.render.console import console
from profiler.cli.options import profile_parser, settings_from
from profiler.cli.profile import TRACES
from profiler.cli.progress import progress_bar, status


def run(argv: list[str]) -> int:
    args = profile_parser(sweep=True).parse_args(argv)  # before the heavy imports: --help stays instant
    import pandas as pd

    from analyzers.atomic import write_text
    from analyzers.lengths import parse_lengths
    from analyzers.render.sweep import render_sweep, sweep_json
    from analyzers.store import csv_text, save_run
    from analyzers.sweep import Sweep, summarise, sweep_rows
    from analyzers.tables import compute_tables
    from profiler.runfolder import StagedFolder, check_out, default_run_dir
    from profiler.session import Session

    if args.chunks:
        return _chunk_sweep(args, argv)
    lengths = parse_lengths(args.lengths)
    if args.out is not None:
        check_out(args.out)  # before the model's config is even read
    session = Session.prepare(settings_from(args, lengths, ["ttft-profile", "sweep", *argv]))
    final = args.out if args.out is not None else default_run_dir(TRACES, session.source.name, kind="sweep")
    with StagedFolder(final) as staged:  # any failure or signal before commit removes it
        session.announce()
        with status(session.build_message):
            session.build()
        rows = []
        with progress_bar("sweep") as update:
            for done, n in enumerate(lengths):
                if update is not None:
                    update(f"n={n}", done, len(lengths))
                folder = staged.path / f"n{n}"
                folder.mkdir()
                run = session.profile(n, folder)
                run.path = str(folder)  # lint reads the trace beside it
                tables = compute_tables(run)
                save_run(tables.run, folder, tables)
                rows += sweep_rows(tables)
        table = pd.DataFrame(rows)
        summary = summarise(table)
        summary.update({"model": session.source.name, "layers_built": session.built_layers,
                        "layers_total": session.total_layers, "dtype": session.dtype, "device": session.device,
                        "device_name": session.info.name, "command": ["ttft-profile", "sweep", *argv],
                        "runs": [f"n{n}" for n in lengths]})
        write_text(staged.path / "sweep.csv", csv_text(table))
        write_text(staged.path / "fits.csv", csv_text(pd.DataFrame(summary["fits"])))
        write_text(staged.path / "sweep.json", dumps(summary) + "\n")
        sweep = Sweep(table, summary, str(staged.commit()))
        if args.json:
            print(dumps(sweep_json(sweep)))
        else:
            render_sweep(sweep, console())
    return 0


def _chunk_sweep(args, argv: list[str]) -> int:
    """`sweep --chunk 512,1k --len N`: the unchunked prefill, then one run per chunk size, one model build."""
    import pandas as pd

    from analyzers.atomic import write_text
    from analyzers.chunk_sweep import ChunkSweep, chunk_row, summarise, sweep_table
    from analyzers.lengths import token_count
    from analyzers.render.chunk_sweep import FIGURE, chunk_figure, chunk_sweep_json, render_chunk_sweep
    from analyzers.store import csv_text, save_run
    from analyzers.tables import compute_tables
    from profiler.runfolder import StagedFolder, check_out, default_run_dir
    from profiler.session import Session

    if "," in args.lengths or ".." in args.lengths:
        raise InputError(f"a chunk sweep runs one prompt length, not {args.lengths!r}; pass one `seq_len`, "
                         "e.g. --len 8k.")
    n = token_count(args.lengths)
    if args.out is not None:
        check_out(args.out)
    session = Session.prepare(settings_from(args, [n], ["ttft-profile", "sweep", *argv]))
    final = args.out if args.out is not None else default_run_dir(TRACES, session.source.name, kind=f"chunks-n{n}")
    plan = [(None, "unchunked"), *((c, f"c{c}") for c in args.chunks)]
    with StagedFolder(final) as staged:
        session.announce()
        with status(session.build_message):
            session.build()
        rows = []
        with progress_bar("chunk sweep") as update:
            for done, (chunk, name) in enumerate(plan):
                if update is not None:
                    update(name, done, len(plan))
                folder = staged.path / name
                folder.mkdir()
                run = session.profile(n, folder, chunk=chunk or 0)
                run.path = str(folder)  # lint reads the trace beside it
                tables = compute_tables(run)
                save_run(tables.run, folder, tables)
                rows.append(chunk_row(tables.run, name, chunk))
        table = sweep_table(rows)
        summary = {**summarise(table, n), "model": session.source.name, "dtype": session.dtype,
                   "device": session.device, "device_name": session.info.name,
                   "command": ["ttft-profile", "sweep", *argv], "figure": FIGURE}
        write_text(staged.path / "chunk_sweep.csv", csv_text(pd.DataFrame(summary["rows"])))
        write_text(staged.path / "chunk_sweep.json", dumps(summary) + "\n")
        chunk_figure(table, staged.path / FIGURE, f"{session.source.name}: TTFT against chunk size at {n:,} tokens")
        sweep = ChunkSweep(table, summary, str(staged.commit()))
        if args.json:
            print(dumps(chunk_sweep_json(sweep)))
        else:
            render_chunk_sweep(sweep, console())
    return 0
