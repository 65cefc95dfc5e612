"""`ttft-profile sweep`: several prompt lengths, one process, one model build.

Each length gets a run folder of its own inside the sweep folder, so every
tool that reads a run reads these too; `sweep.csv` holds the long table the
fits are made from (analyzers.sweep).
"""
from __future__ import annotations

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
                tables = compute_tables(session.profile(n, folder))
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
