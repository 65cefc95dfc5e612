"""`ttft-profile sweep`: several prompt lengths, one process, one model build.

Each length gets a run folder of its own inside the sweep folder, so every
tool that reads a run reads these too; `sweep.csv` holds the long table the
fits are made from.
"""
from __future__ import annotations

from pathlib import Path

from analyzers.render.console import console as make_console
from analyzers.jsonout import dumps
from profiler.errors import UsageError


def sweep_rows(run) -> list[dict]:
    """One row per present component of a run, plus its TTFT: the sweep's long table."""
    from analyzers.breakdown import breakdown, ttft_stats

    rows = [{"seq_len": run.seq_len, "component": r.component, "ms": r.ms, "ms_min": r.ms_min, "ms_max": r.ms_max,
             "share": r.share} for r in breakdown(run).itertuples() if r.present]
    stats = ttft_stats(run)
    rows.append({"seq_len": run.seq_len, "component": "ttft", "ms": stats["p50_ms"], "ms_min": stats["min_ms"],
                 "ms_max": stats["max_ms"], "share": 1.0})
    return rows


def summarise(table) -> dict:
    """Fits, crossover and the linear model's drift, as data (also the body of sweep.json)."""
    from analyzers.scaling import crossover, extrapolate, fit_components, fits_table, linear_drift

    components = table[table["component"] != "ttft"]
    fits = fit_components(components)
    lengths = sorted(table["seq_len"].unique())
    n_max = 8 * lengths[-1]
    cross = None
    if "attention" in fits and "mlp" in fits:
        cross = crossover(fits["attention"], fits["mlp"], n_max)
    ahead = [2 * lengths[-1], 4 * lengths[-1]]
    parts = extrapolate({k: f for k, f in fits.items() if k != "ttft"}, ahead)
    # TTFT ahead = the sum of the component fits (not the linear TTFT fit, which is the model being
    # shown wrong); errors added in quadrature, as if the components' fit errors were independent
    # a fit with no spare points has an unknown error (NaN), and so has any sum that includes it
    totals = parts.groupby("seq_len").agg(ms=("ms", "sum"),
                                          stderr_ms=("stderr_ms", lambda e: (e**2).sum(skipna=False) ** 0.5))
    residuals = []
    for component, fit in fits.items():
        measured = (table if component == "ttft" else components)
        for row in measured[measured["component"] == component].itertuples(index=False):
            fitted = fit.predict(row.seq_len)[0]
            residuals.append({"component": component, "seq_len": int(row.seq_len), "ms": row.ms,
                              "fitted_ms": fitted, "residual_ms": row.ms - fitted})
    return {
        "lengths": [int(n) for n in lengths],
        "residuals": residuals,
        "fits": fits_table(fits).to_dict("records"),
        "crossover_attention_over_mlp": cross,
        "crossover_searched_up_to": n_max,
        "extrapolated": parts.to_dict("records"),
        "extrapolated_ttft": [{"seq_len": int(n), "ms": r.ms, "stderr_ms": r.stderr_ms} for n, r in totals.iterrows()],
        "linear_ttft_drift": linear_drift(table).to_dict("records"),
    }


def cmd_sweep(argv: list[str]) -> int:
    from analyzers import atomic
    from analyzers.scaling import parse_lengths
    from profiler.cli import _check_args, _progress, _with_status, profile_parser
    from profiler.runfolder import StagedFolder, default_run_dir
    from profiler.session import Session

    args = profile_parser(sweep=True).parse_args(argv)
    try:
        lengths = parse_lengths(args.lengths)
    except ValueError as exc:
        raise UsageError.from_error(exc) from None
    session = Session.prepare(args, lengths, _check_args)
    final = args.out if args.out is not None else default_run_dir(Path("traces"), session.source.name, kind="sweep")
    staged = StagedFolder(final)
    import pandas as pd

    try:
        session.announce()
        session.build(_with_status)
        rows = []
        bar, update = _progress("sweep")
        try:
            for done, n in enumerate(lengths):
                if update is not None:
                    update(f"n={n}", done, len(lengths))
                folder = staged.path / f"n{n}"
                folder.mkdir()
                run = session.profile(n, folder, None, ["ttft-profile", "sweep", *argv])
                run.save(folder)
                rows += sweep_rows(run)
        finally:
            if bar is not None:
                bar.stop()
        table = pd.DataFrame(rows)
        summary = summarise(table)
        summary.update({"model": session.source.name, "layers_built": session.built_layers,
                        "layers_total": session.total_layers, "dtype": session.dtype, "device": session.device,
                        "device_name": session.info.name, "command": ["ttft-profile", "sweep", *argv],
                        "runs": [f"n{n}" for n in lengths]})
        atomic.write_text(staged.path / "sweep.csv", table.to_csv(index=False, float_format="%.6g"))
        atomic.write_text(staged.path / "fits.csv",
                          pd.DataFrame(summary["fits"]).to_csv(index=False, float_format="%.6g"))
        atomic.write_text(staged.path / "sweep.json", dumps(summary) + "\n")
        path = staged.commit()
    except BaseException:
        staged.discard()
        raise
    if args.json:
        summary["sweep_dir"] = str(path)
        print(dumps(summary))
    else:

        from analyzers.render.sweep import render_sweep

        render_sweep(table, summary, str(path), make_console())
    return 0
