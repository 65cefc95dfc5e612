"""The analysis commands on a laptop with only the run folder: torch cannot even be imported."""
from __future__ import annotations

import shutil

from tests.conftest import cli_without_torch


def test_diff_and_report_run_without_torch(qwen3_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(qwen3_run.path, folder)
    diff = cli_without_torch("diff", str(folder), str(folder), "--json")
    assert diff.returncode == 0, diff.stderr
    assert '"components"' in diff.stdout
    report = cli_without_torch("report", str(folder))
    assert report.returncode == 0, report.stderr
    assert (folder / "report.html").stat().st_size > 1000


def test_analyze_sweep_without_torch(llama_sweep):
    result = cli_without_torch("analyze", str(llama_sweep.path), "--json")
    assert result.returncode == 0, result.stderr
    assert '"lengths"' in result.stdout


def test_help_loads_neither_torch_nor_pandas():
    """`--help` and the subcommands' help answer at once: nothing heavy is imported to print them."""
    from tests.conftest import python_without_torch

    code = ("from profiler.cli import main\n"
            "for argv in (['--help'], ['analyze', '--help'], ['predict', '--help'], ['sweep', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('pandas' in sys.modules, 'numpy' in sys.modules)\n")
    result = python_without_torch(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False"
