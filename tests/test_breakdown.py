"""The breakdown table of a hand-built Run: numbers worked out by hand."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analyzers import RunFormatError, breakdown, load_run, ttft_stats
from analyzers.components import nearest_rank_index
from analyzers.run import Run
from analyzers.store import save_run
from tests.conftest import python_without_torch


def make_run(ttft_ns, rows, present=("embedding", "attention", "mlp", "sampling", "h2d", "d2h")) -> Run:
    return Run(model="hand-made", seq_len=16, batch=1, dtype="float32", device="cpu", device_name="cpu",
               attn="sdpa", warmup=0, repeat=len(ttft_ns), ttft_ns=list(ttft_ns), cold_ttft_ns=999_000_000,
               component_ns=rows, components_present=list(present))


def row(repeat, component, ns, layer=None, calls=1, detail=None):
    return {"repeat": repeat, "component": component, "layer": layer, "detail": detail, "ns": ns, "calls": calls}


@pytest.mark.parametrize("values,q,expected_value", [
    ([100, 300, 200], 0.5, 200),      # ranks 1..3, ceil(1.5) = 2nd smallest
    ([40, 10, 30, 20], 0.5, 20),      # ceil(2.0) = 2nd smallest: a real sample, not 25
    ([5], 0.5, 5),
    (list(range(10, 0, -1)), 0.9, 9),  # ceil(9.0) = 9th smallest of 1..10
])
def test_nearest_rank(values, q, expected_value):
    assert values[nearest_rank_index(values, q)] == expected_value


def test_rows_are_the_median_repeat_and_sum_to_its_ttft():
    ms = 1_000_000
    rows = [
        row(0, "attention", 40 * ms, layer=0), row(0, "mlp", 50 * ms, layer=0),
        row(1, "attention", 60 * ms, layer=0), row(1, "attention", 30 * ms, layer=1),
        row(1, "mlp", 80 * ms, layer=0), row(1, "mlp", 70 * ms, layer=1), row(1, "embedding", 5 * ms),
        row(2, "attention", 45 * ms, layer=0), row(2, "mlp", 55 * ms, layer=0),
    ]
    run = make_run([100 * ms, 250 * ms, 110 * ms], rows)
    # TTFTs 100, 250, 110 -> p50 is 110 ms, repeat 2.
    table = breakdown(run).set_index("component")
    assert table.loc["attention", "ms"] == pytest.approx(45)
    assert table.loc["mlp", "ms"] == pytest.approx(55)
    assert table.loc["other", "ms"] == pytest.approx(110 - 45 - 55)
    assert table["ms"].sum() == pytest.approx(110)
    assert table.loc["mlp", "share"] == pytest.approx(55 / 110)
    # spread over repeats: attention 40, 90 (60 + 30), 45
    assert table.loc["attention", "ms_min"] == pytest.approx(40)
    assert table.loc["attention", "ms_max"] == pytest.approx(90)
    # other per repeat: 10, 5, 10
    assert table.loc["other", "ms_min"] == pytest.approx(5)
    assert table.loc["attention", "ms_per_layer"] == pytest.approx(45)
    assert bool(table.loc["qk_norm", "present"]) is False
    assert bool(table.loc["other", "present"]) is True


def test_per_layer_mean_ignores_calls_without_a_layer():
    ms = 1_000_000
    rows = [row(0, "rope", 3 * ms), row(0, "rope", 2 * ms, layer=0), row(0, "rope", 4 * ms, layer=1)]
    table = breakdown(make_run([20 * ms], rows, present=("rope",))).set_index("component")
    assert table.loc["rope", "ms"] == pytest.approx(9)
    assert table.loc["rope", "layers"] == 2
    assert table.loc["rope", "ms_per_layer"] == pytest.approx(3)  # (2 + 4) / 2
    assert math.isnan(table.loc["mlp", "ms_per_layer"])


def test_stats_report_p90_only_from_ten_repeats():
    nine = make_run([i * 1_000_000 for i in range(1, 10)], [])
    assert "p90_ms" not in ttft_stats(nine)
    ten = make_run([i * 1_000_000 for i in range(10, 0, -1)], [])
    stats = ttft_stats(ten)
    assert stats["p90_ms"] == 9 and stats["p50_ms"] == 5
    assert stats["min_ms"] == 1 and stats["max_ms"] == 10 and stats["cold_ms"] == 999


def test_save_and_load_round_trip(tmp_path):
    ms = 1_000_000
    run = make_run([30 * ms, 20 * ms, 25 * ms], [row(i, "mlp", 10 * ms, layer=0) for i in range(3)])
    save_run(run, tmp_path / "r")
    again = load_run(tmp_path / "r")
    assert again.ttft_ns == run.ttft_ns and again.component_ns == run.component_ns
    csv = pd.read_csv(tmp_path / "r" / "breakdown.csv").set_index("component")
    assert csv["ms"].sum() == pytest.approx(25)
    assert csv.loc["mlp", "ms"] == pytest.approx(10)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["breakdown.csv", "breakdown_layers.csv", "run.json"]


def test_load_rejects_what_is_not_a_run(tmp_path):
    with pytest.raises(RunFormatError, match="no run.json"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text("{\"schema\": \"ttft-profile/run\", \"schema_version\": 99}")
    with pytest.raises(RunFormatError, match="schema version 99"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text("{\"schema\": \"ttft-profile/run\", \"schema_ver")
    with pytest.raises(RunFormatError, match="cut short"):
        load_run(tmp_path)


def test_analyzers_work_without_torch(tmp_path):
    ms = 1_000_000
    save_run(make_run([10 * ms], [row(0, "mlp", 4 * ms)]), tmp_path / "r")
    code = (
        "import analyzers, json\n"
        f"run = analyzers.load_run({str(tmp_path / 'r')!r})\n"
        "print(json.dumps(analyzers.breakdown(run).set_index('component')['ms'].to_dict()))\n"
    )
    out = python_without_torch(code)
    assert out.returncode == 0, out.stderr
    ms_by_component = json.loads(out.stdout)
    assert ms_by_component["mlp"] == pytest.approx(4) and ms_by_component["other"] == pytest.approx(6)


def test_device_clock_runs_call_the_remainder_host_gap():
    ms = 1_000_000
    run = make_run([50 * ms], [row(0, "mlp", 30 * ms), row(0, "attention", 12 * ms)])
    run.timing = "cuda-events"
    table = breakdown(run).set_index("component")
    assert table.loc["host_gap", "ms"] == pytest.approx(8) and bool(table.loc["host_gap", "present"])
    assert table.loc["other", "ms"] == 0 and not bool(table.loc["other", "present"])
    assert table["ms"].sum() == pytest.approx(50)


def test_every_analyzers_module_imports_without_torch():
    import pkgutil

    import analyzers

    names = [m.name for m in pkgutil.walk_packages(analyzers.__path__, "analyzers.")]
    code = ("import importlib\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            "assert sys.modules['torch'] is None\n")
    out = python_without_torch(code)
    assert out.returncode == 0, out.stderr
    assert len(names) >= 20
