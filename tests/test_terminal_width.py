"""The run table through the real renderer at the widths people have: every number whole at 80 columns
(never an ellipsis), more columns at 120, everything with `--wide`; the headline sentence first and the
top findings of prefill lint under the table."""
from __future__ import annotations

import io
import json
import re
import shutil
from dataclasses import replace

import pytest

from analyzers.lint import Finding
from analyzers.render.fmt import ms, num
from analyzers.render.headline import biggest_gap
from tests.conftest import SharedRun, cli, isolate

ROOFLINE_RUN = ("--model", "tiny-qwen3", "--len", "64", "--layers", "2", "--repeat", "1", "--warmup", "0",
                "--no-trace", "--gpu", "h100-sxm")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"[│┃]", line) if cell.strip()]


def _rows(stdout: str) -> dict[str, list[str]]:
    """Table rows (and the header) by their first cell."""
    return {cells[0]: cells for line in stdout.splitlines() if line[:1] in "│┃" and len(cells := _cells(line)) > 1}


def _header(stdout: str) -> list[str]:
    return _rows(stdout)["component"]


def _tables(path):
    from analyzers.run import load_run
    from analyzers.tables import compute_tables

    return compute_tables(load_run(path))


def _whole(stdout: str, width: int | None = None) -> None:
    """No cell cut to an ellipsis, and (at a width) no line wider than the console."""
    assert "…" not in stdout and "..." not in stdout, stdout
    if width is not None:
        assert max(len(line) for line in stdout.splitlines()) <= width, stdout


@pytest.fixture(scope="module")
def roofline_run(tmp_path_factory) -> SharedRun:
    """tiny-qwen3 with H100 datasheet ceilings (roofline columns) and 2 of 4 layers (the estimate column),
    profiled in a console of 80 columns."""
    root = tmp_path_factory.mktemp("width")
    with pytest.MonkeyPatch.context() as patch:
        isolate(patch, root / "env")
        result = cli(*ROOFLINE_RUN, "--out", str(root / "run"), env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    return SharedRun(root / "run", result)


def test_at_80_columns_every_number_is_whole(roofline_run):
    out = roofline_run.result.stdout
    _whole(out, 80)
    assert _header(out) == ["component", "ms", "share", "floor ms", "eff"]
    rows = _rows(out)
    table = _tables(roofline_run.path)
    for row in table.breakdown.itertuples():
        if row.present:
            assert rows[row.component][1] == ms(row.ms), (row.component, out)
            assert rows[row.component][2] == f"{100 * row.share:.1f}%"
    for row in table.roofline.itertuples():
        assert rows[row.component][3] == num(row.floor_ms), (row.component, out)
    assert rows["TTFT (p50)"][1] == ms(table.stats["p50_ms"]) and rows["TTFT (p50)"][-1] == ms(table.floor_ms)


def test_the_headline_sentence_comes_first_and_names_the_biggest_gap(roofline_run):
    out = roofline_run.result.stdout
    lines = out.splitlines()
    model = next(i for i, line in enumerate(lines) if line.startswith("tiny-qwen3"))
    sentence = " ".join(lines[:model])  # wrapped at 80 columns, never cut
    table = _tables(roofline_run.path)
    component, gap = biggest_gap(table)
    assert sentence.startswith(f"TTFT {ms(table.stats['p50_ms'])} ms, floor {ms(table.floor_ms)} ms; ")
    assert f"biggest gap: {component}, {ms(gap)} ms above its floor" in sentence and sentence.endswith(".")


def test_at_120_columns_the_medium_set(roofline_run):
    result = cli("analyze", str(roofline_run.path), env={"COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    _whole(result.stdout, 120)
    header = _header(result.stdout)
    assert header == ["component", "ms", "share", "ms/layer", "min–max ms", "est. 4 layers", "bound", "floor ms",
                      "eff", "headroom ms"]
    assert _rows(result.stdout)["qkv_proj"][1] == _rows(roofline_run.result.stdout)["qkv_proj"][1]


def test_wide_shows_every_column_even_at_80(roofline_run):
    result = cli("analyze", str(roofline_run.path), "--wide", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    _whole(result.stdout)  # wider than 80: the terminal wraps the lines, no number is cut
    assert _header(result.stdout) == ["component", "ms", "share", "calls", "ms/layer", "min–max ms", "est. 4 layers",
                                      "GFLOP", "MB", "FLOP/B", "bound", "floor ms", "eff", "headroom ms"]
    from profiler.cli.options import profile_parser

    assert profile_parser().parse_args(["--wide"]).wide and not profile_parser().parse_args([]).wide


def test_a_pipe_gets_the_medium_set_and_json_keeps_every_number(roofline_run):
    shown = cli("analyze", str(roofline_run.path))  # no COLUMNS, not a terminal: 200 columns
    assert "headroom ms" in _header(shown.stdout) and "GFLOP" not in _header(shown.stdout)
    data = json.loads(cli("analyze", str(roofline_run.path), "--json").stdout)
    assert {"flops", "bytes", "intensity", "bound", "floor_ms", "efficiency", "headroom_ms"} <= set(data["roofline"][0])
    assert {"calls", "ms_per_layer", "ms_min", "ms_max"} <= set(data["components"][0]) and data["estimate"]


def test_a_run_without_a_roofline_at_80_and_narrower(qwen3_run):
    # without a roofline the medium set is five columns and fits 80; at 40 the narrow set still does
    for width, header in ((80, ["component", "ms", "share", "ms/layer", "min–max ms"]), (40, ["component", "ms", "share"])):
        result = cli("analyze", str(qwen3_run.path), env={"COLUMNS": str(width)})
        assert result.returncode == 0, result.stderr
        _whole(result.stdout, width)
        assert _header(result.stdout) == header
        assert result.stdout.startswith("TTFT ") and "largest part: " in result.stdout.split("tiny-qwen3")[0]


def test_the_all_position_logits_finding_is_printed_once(roofline_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(roofline_run.path, folder)
    data = json.loads((folder / "run.json").read_text())
    data["logits_kept"] = "all"
    (folder / "run.json").write_text(json.dumps(data))
    result = cli("analyze", str(folder), env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    _whole(result.stdout, 80)
    flat = " ".join(result.stdout.split())
    findings = _tables(folder).findings
    assert "all-position-logits" in [f.key for f in findings]
    assert f"first finding: {findings[0].title}." in flat
    block = []
    for i, finding in enumerate(findings[:3], 1):
        stake = f" ({ms(finding.ms)} ms at stake)" if finding.ms is not None else ""
        block += [f"{i}. {finding.title}{stake}", f"fix: {finding.fix}"]
    assert " ".join(" ".join(block).split()) in flat
    assert "the model computed logits for every position" not in flat  # the old hard-coded line: one source now


def test_the_top_three_findings_with_the_ms_at_stake(roofline_run):
    from rich.console import Console

    from analyzers.render.terminal import render_run

    findings = [Finding(f"rule-{i}", f"problem {i}", "evidence", ms_, f"fix {i}")
                for i, ms_ in enumerate((12.5, 3.25, 0.5, None))]
    tables = replace(_tables(roofline_run.path), findings=findings)
    out = io.StringIO()
    render_run(tables, Console(file=out, width=80))
    printed = out.getvalue()
    _whole(printed, 80)
    assert " ".join(printed.split("tiny-qwen3")[0].split()).endswith("first finding: problem 0.")
    assert "findings, costliest first (top 3 of 4; every one in --json):" in printed
    start = printed.index("findings, costliest first")
    assert printed[start:].splitlines()[1:7] == ["1. problem 0 (12.50 ms at stake)", "   fix: fix 0",
                                                 "2. problem 1 (3.250 ms at stake)", "   fix: fix 1",
                                                 "3. problem 2 (0.500 ms at stake)", "   fix: fix 2"]
    assert "problem 3" not in printed


def test_a_tensor_parallel_folder_fits_80_columns(qwen3_run, tmp_path):
    from tests.test_tp_view import _edit_rank, _tp_json

    folder = tmp_path / "tp"
    for rank in (0, 1):
        shutil.copytree(qwen3_run.path, folder / f"rank{rank}")
        _edit_rank(folder / f"rank{rank}" / "run.json", rank)
    _tp_json(folder)
    result = cli("analyze", str(folder), env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    _whole(result.stdout, 80)
    assert _header(result.stdout) == ["component", "mean ms", "slowest ms", "rank", "share"]
