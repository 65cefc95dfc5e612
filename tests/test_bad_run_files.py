"""Hand-edited, truncated or foreign run.json and sweep.json files: one sentence naming the file and the
field, exit code 2, never a traceback; and the same refusal from the library for a notebook user."""
from __future__ import annotations

import json
import shutil

import pytest

from analyzers.errors import InputError
from analyzers.run import load_run
from analyzers.sweep import load_sweep
from tests.conftest import cli


def _one_sentence(result, *needles: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ttft-profile: error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


RUN_DAMAGE = [
    # (what a user did to run.json, the field the sentence must name)
    (lambda d: d.update(seq_len="2048"), "'seq_len'"),
    (lambda d: d.update(ttft_ns="fast"), "'ttft_ns'"),
    (lambda d: d.update(component_ns=[{"repeat": 0}]), "'component_ns'"),
    (lambda d: d.update(telemetry=[1, 2]), "'telemetry'"),
    (lambda d: d.update(random_weights="yes"), "'random_weights'"),
    (lambda d: d.pop("cold_ttft_ns"), "'cold_ttft_ns'"),
    (lambda d: d.pop("dtype"), "'dtype'"),
    (lambda d: d.update(ttft_ns=[-5]), "'ttft_ns'"),
    (lambda d: d.update(ttft_ns=[float("nan")]), "'ttft_ns'"),
    (lambda d: d.update(batch=0), "'batch'"),
]


@pytest.fixture()
def run_copy(qwen3_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(qwen3_run.path, folder)
    return folder


@pytest.mark.parametrize("damage,field", RUN_DAMAGE, ids=[f for _, f in RUN_DAMAGE])
def test_damaged_run_json_names_file_and_field(run_copy, damage, field):
    path = run_copy / "run.json"
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))  # NaN written as Python's json writes it, as a hand edit might
    for command in (["analyze", str(run_copy)], ["diff", str(run_copy), str(run_copy)], ["report", str(run_copy)]):
        _one_sentence(cli(*command), field)
    with pytest.raises(InputError, match=r"run\.json"):
        load_run(run_copy)


def test_run_json_from_the_future_says_upgrade(run_copy):
    path = run_copy / "run.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    _one_sentence(cli("analyze", str(run_copy)), "schema version 99", "upgrade ttft-profile")


SWEEP_DAMAGE = [
    (lambda d: d.update(fits="none"), "'fits'"),
    (lambda d: d.update(fits=[{"component": "mlp"}]), "'fits'"),
    (lambda d: d.pop("runs"), "'runs'"),
    (lambda d: d.update(crossover_attention_over_mlp="soon"), "'crossover_attention_over_mlp'"),
    (lambda d: d.update(linear_ttft_drift=[{"seq_len": "x"}]), "'linear_ttft_drift'"),
    (lambda d: d.update(extrapolated_ttft=None), "'extrapolated_ttft'"),
]


@pytest.mark.parametrize("damage,field", SWEEP_DAMAGE, ids=[f for _, f in SWEEP_DAMAGE])
def test_damaged_sweep_json_names_file_and_field(llama_sweep, tmp_path, damage, field):
    folder = tmp_path / "sweep"
    shutil.copytree(llama_sweep.path, folder)
    data = json.loads((folder / "sweep.json").read_text())
    damage(data)
    (folder / "sweep.json").write_text(json.dumps(data))
    for command in (["analyze", str(folder)], ["report", str(folder)]):
        _one_sentence(cli(*command), "sweep.json", field)
    with pytest.raises(InputError, match=field):
        load_sweep(folder)


def test_sweep_csv_without_times(llama_sweep, tmp_path):
    folder = tmp_path / "sweep"
    shutil.copytree(llama_sweep.path, folder)
    (folder / "sweep.csv").write_text("seq_len,component\n64,mlp\n")
    _one_sentence(cli("analyze", str(folder)), "sweep.csv")
