"""The small things a Python session and a shell expect: --version, `python -m profiler`."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from profiler.version import __version__
from tests.conftest import ROOT, cli


def test_version_names_ours_and_the_libraries_a_bug_report_needs():
    done = cli("--version")
    assert done.returncode == 0
    line = done.stdout.strip()
    assert line.startswith(f"ttft-profile {__version__},")
    assert f"torch {version('torch')}" in line and f"transformers {version('transformers')}" in line


def test_python_dash_m_profiler_is_the_command():
    done = subprocess.run([sys.executable, "-m", "profiler", "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(f"ttft-profile {__version__}")


def test_a_run_shows_a_summary_and_a_table_in_a_notebook(tiny_model):
    """repr: one line with the TTFT p50; _repr_html_: the headline, the formatted breakdown, the findings."""
    from analyzers.components import ttft_stats
    from analyzers.tables import compute_tables
    from profiler.measure import profile_prefill

    run = profile_prefill(tiny_model("tiny-llama"), 32, warmup=0, repeat=3, telemetry_interval_ms=None)
    text = repr(run)
    p50 = ttft_stats(run)["p50_ms"]
    assert text.startswith("Run(")
    assert "n=32" in text and "repeats" in text and "\n" not in text and len(text) < 200
    page = run._repr_html_()
    assert "<table>" in page and "mlp" in page and "Findings" in page and "e-0" not in page
    tables = compute_tables(run)
    assert repr(tables).startswith("RunTables(") and tables._repr_html_() == page
    from analyzers.render.fmt import ms

    assert f"TTFT p50 {ms(p50)} ms over 3 repeats" in text  # the p50 printed is the run's own


def test_quiet_keeps_the_result_and_drops_the_notes(tmp_path):
    import os

    from profiler.quiet import QUIET_ENV

    args = ["--model", "tiny-llama", "--len", "32", "--repeat", "1", "--warmup", "0", "--no-trace"]
    loud = cli(*args, "--out", str(tmp_path / "a"))
    quiet = cli("--quiet", *args, "--out", str(tmp_path / "b"))
    assert loud.returncode == quiet.returncode == 0
    assert "note: tiny-llama: no weights found" in loud.stderr
    assert "note:" not in quiet.stderr and "TTFT (p50)" in quiet.stdout  # the table itself stays
    assert QUIET_ENV not in os.environ  # set for one command only
    bad = cli("-q", "--model", "tiny-llama", "--len", "0")
    assert bad.returncode == 2 and "error" in bad.stderr  # errors are never quiet


def test_models_fits_80_columns_and_says_what_it_takes():
    narrow = cli("models", env={"COLUMNS": "80"})
    assert narrow.returncode == 0 and "…" not in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert "46.7B" in narrow.stdout and "12.9B" in narrow.stdout  # Mixtral: total and active parameters
    wide = cli("models", "--wide", env={"COLUMNS": "80"})
    assert "family" in wide.stdout and "MoE 8x top-2" in wide.stdout
    helped = cli("models", "--help")
    assert helped.returncode == 0 and "--wide" in helped.stdout
    assert cli("-q", "--version").stdout.startswith(f"ttft-profile {__version__}")
