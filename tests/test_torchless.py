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


def test_predict_every_builtin_model_without_torch():
    """`predict` answers for every model `ttft-profile models` lists, GPT-2 to Qwen3-MoE, with torch absent.

    The totals must equal the ones the same command prints in this process (torch importable), so the
    torch-less path computes the same figures rather than a subset."""
    import json

    from profiler.catalog import builtin_names
    from tests.conftest import cli, python_without_torch

    code = ("import io, json, contextlib\nfrom profiler.catalog import builtin_names\nfrom profiler.cli import main\n"
            "out = {}\nfor name in builtin_names():\n    buf = io.StringIO()\n"
            "    with contextlib.redirect_stdout(buf):\n"
            "        code = main(['predict', '--model', name, '--len', '1k', '--gpu', 'h100-sxm', '--json'])\n"
            "    out[name] = [code, json.loads(buf.getvalue())['totals'] if code == 0 else None]\n"
            "print(json.dumps(out))\n")
    result = python_without_torch(code)
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(got) == sorted(builtin_names())
    for name in ("gpt2", "tiiuae/falcon-7b", "mistralai/Mixtral-8x7B-v0.1", "Qwen/Qwen3-30B-A3B"):
        here = cli("predict", "--model", name, "--len", "1k", "--gpu", "h100-sxm", "--json")
        assert got[name] == [0, json.loads(here.stdout)["totals"]], name
    assert all(code == 0 for code, _totals in got.values()), {n: c for n, (c, _t) in got.items() if c}
