"""Writing a run folder: the run and the tables it shows, each file atomically.

Lives beside `Run` rather than inside it, so the data object never calls the
analysis. run.json is written last: its presence marks a complete folder.
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from analyzers.atomic import write_text
from analyzers.jsonout import dumps
from analyzers.run import Run
from analyzers.tables import RunTables, compute_tables
from analyzers.telemetry.samples import write_samples_csv


def csv_text(frame: pd.DataFrame) -> str:
    """The project's CSV flavour: no index, six significant digits."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


def save_run(run: Run, folder: str | Path, tables: RunTables | None = None) -> Path:
    """Write run.json, breakdown.csv, breakdown_layers.csv, roofline.csv and nvml.csv into `folder`.

    Pass the `tables` already shown to the user so the files hold the very same numbers.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = tables if tables is not None else compute_tables(run)
    write_text(folder / "breakdown.csv", csv_text(tables.breakdown))
    write_text(folder / "breakdown_layers.csv", csv_text(tables.layers))
    if tables.roofline is not None:
        write_text(folder / "roofline.csv", csv_text(tables.roofline))
    if run.telemetry_samples:
        write_samples_csv(run.telemetry_samples, folder / "nvml.csv")
    write_text(folder / "run.json", dumps(run.to_dict()) + "\n")
    return folder
