"""`analyze` on folders the CLI itself just wrote: a run re-rendered, a sweep summarised, a damaged run refused
in one sentence or shown without the damaged values, never a traceback."""
from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest

from tests.conftest import cli


def _cells(line: str) -> list[str]:
    """The cells of one row of a rich table printed to a pipe."""
    return [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]


def _rows(stdout: str) -> dict[str, list[str]]:
    """Table rows by their first cell."""
    return {cells[0]: cells for cells in map(_cells, stdout.splitlines()) if len(cells) > 1}


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_analyze_rerenders_a_run_folder(qwen3_run):
    run = json.loads((qwen3_run.path / "run.json").read_text())
    result = cli("analyze", str(qwen3_run.path))
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout)
    for component in [*run["components_present"], "other"]:
        assert component in rows, (component, result.stdout)
    # one repeat: the p50 is that repeat's TTFT; the table shows it to 4-5 significant digits
    p50_ms = run["ttft_ns"][0] / 1e6
    assert _number(rows["TTFT (p50)"][1]) == pytest.approx(p50_ms, rel=5e-3)
    assert any(line.startswith("TTFT p50") for line in result.stdout.splitlines()), result.stdout
    # the same numbers the profile printed when it wrote the folder
    profiled = _rows(qwen3_run.result.stdout)
    for component in run["components_present"]:
        assert rows[component] == profiled[component]


def test_analyze_of_a_sweep_folder_shows_every_length(llama_sweep):
    result = cli("analyze", str(llama_sweep.path))
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout)
    table = pd.read_csv(llama_sweep.path / "sweep.csv")
    for n in (64, 128, 256):
        assert f"{n:,}" in rows, (n, result.stdout)
        ttft = table[(table["seq_len"] == n) & (table["component"] == "ttft")]["ms"].item()
        shown = [_number(cell) for cell in rows[f"{n:,}"][1:] if re.fullmatch(r"[\d,]+\.\d+", cell)]
        assert any(value == pytest.approx(ttft, abs=0.006) for value in shown), (ttft, rows[f"{n:,}"])


def test_analyze_a_run_whose_telemetry_holds_nulls(qwen3_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(qwen3_run.path, folder)
    data = json.loads((folder / "run.json").read_text())
    rows = data["telemetry"]["attributed"]
    damaged = [i for i, row in enumerate(rows) if row["name"] in ("forward", "h2d") or i == len(rows) - 1]
    # A short run may have no forward average at all (fewer than 3 samples at 10 ms); the damage must hit
    # a row the renderer would print, so one forward row claims enough samples before its value is nulled.
    forward = next(i for i in damaged if rows[i]["name"] == "forward")
    rows[forward]["samples"] = max(int(rows[forward]["samples"] or 0), 3)
    for i in damaged:
        rows[i]["value"] = None
        rows[i]["covered_ms"] = None
    (folder / "run.json").write_text(json.dumps(data))
    result = cli("analyze", str(folder))  # a TypeError would propagate here with its traceback
    assert "Traceback" not in result.stderr
    if result.returncode == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ttft-profile: error:")]
        assert len(errors) == 1, result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert "TTFT (p50)" in result.stdout
        assert not re.search(r"\b(?i:nan)\b|\bNone\b|\bnull\b", result.stdout), result.stdout
