"""Roofline floors, ceilings and predictions, with numbers worked out by hand."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analyzers.cost import ceilings as ceiling_table
from analyzers.cost.ceilings import Ceilings
from analyzers.cost.predict import predict
from analyzers.cost.roofline import RooflineError, roofline, ttft_floor_ms
from tests.conftest import cli, cli_without_torch

# 100 GFLOP/s of float32 and 10 GB/s: easy numbers to divide by
TOY = Ceilings("toy device", {"float32": 100e9}, 10e9, "hand-made")


def costs(*rows):
    return pd.DataFrame(rows, columns=["component", "flops", "flops_executed", "bytes", "calls"])


def test_floors_bounds_and_efficiency():
    table = roofline(costs(("mlp", 1e9, 1e9, 1e6, 1), ("norm", 1e6, 1e6, 1e8, 1)), TOY, "float32",
                     {"mlp": 20.0, "norm": 40.0}).set_index("component")
    # mlp: 1e9 / 1e11 = 10 ms of compute, 1e6 / 1e10 = 0.1 ms of memory -> compute bound, floor 10 ms
    assert table.loc["mlp", "compute_floor_ms"] == pytest.approx(10)
    assert table.loc["mlp", "memory_floor_ms"] == pytest.approx(0.1)
    assert table.loc["mlp", "bound"] == "compute" and table.loc["mlp", "floor_ms"] == pytest.approx(10)
    assert table.loc["mlp", "efficiency"] == pytest.approx(0.5) and table.loc["mlp", "headroom_ms"] == pytest.approx(10)
    assert table.loc["mlp", "intensity"] == pytest.approx(1000)
    # norm: 0.01 ms of compute, 1e8 / 1e10 = 10 ms of memory -> memory bound, 10 / 40 = 25%
    assert table.loc["norm", "bound"] == "memory" and table.loc["norm", "efficiency"] == pytest.approx(0.25)
    assert ttft_floor_ms(table.reset_index()) == pytest.approx(20)


def test_no_peak_for_the_dtype_is_one_sentence():
    with pytest.raises(RooflineError, match="no peak for bfloat16"):
        roofline(costs(("mlp", 1.0, 1.0, 1.0, 1)), TOY, "bfloat16")


def test_unmeasured_component_has_no_efficiency():
    table = roofline(costs(("mlp", 1e9, 1e9, 1e6, 1)), TOY, "float32", {})
    assert math.isnan(table.loc[0, "efficiency"]) and math.isnan(table.loc[0, "measured_ms"])


def test_calibrated_ceilings_are_cached_and_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv("TTFT_PROFILE_CACHE", str(tmp_path))
    assert ceiling_table.load_calibrated("toy device") is None
    chosen, why = ceiling_table.choose("toy device", on_gpu=False)
    assert chosen is None and "ttft-profile calibrate" in why
    ceiling_table.save_calibrated(TOY)
    assert ceiling_table.load_calibrated("toy device") == TOY
    chosen, why = ceiling_table.choose("toy device", on_gpu=False)
    assert chosen == TOY and "hand-made" in why
    # an explicit --gpu wins over calibration
    chosen, why = ceiling_table.choose("toy device", on_gpu=False, gpu_key="h100-sxm")
    assert chosen.bytes_per_s == pytest.approx(3.35e12) and chosen.peak_flops("bf16") == pytest.approx(989e12, rel=0.01)


def test_prediction_floor_and_estimate():
    from profiler.catalog import resolve

    config = resolve("tiny-llama").config
    table, totals = predict(config, 512, TOY, "float32")
    assert totals["floor_ms"] == pytest.approx(table["floor_ms"].sum())
    halved, totals_half = predict(config, 512, TOY, "float32", efficiencies=0.5)
    assert totals_half["estimate_ms"] == pytest.approx(2 * totals["floor_ms"])


def _predict_without_torch(*args):
    return cli_without_torch("predict", *args)


def test_predict_qwen3_8b_without_torch():
    # end to end on purpose: `predict` in a process where torch cannot be imported
    out = _predict_without_torch("--model", "Qwen/Qwen3-8B", "--len", "16384", "--gpu", "h100-sxm", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = {row["component"]: row for row in data["components"]}
    n, layers, heads, head_dim = 16384, 36, 32, 128
    # useful attention FLOPs: 4 * h * H * n(n+1)/2 per layer (QK^T and PV, causal pairs only)
    assert rows["attention"]["flops"] == 4 * head_dim * heads * (n * (n + 1) // 2) * layers
    # q, k, v: 2 * n * d * (H*h + 2*K*h) per layer
    assert rows["qkv_proj"]["flops"] == 2 * n * 4096 * (32 * 128 + 2 * 8 * 128) * layers
    # lm_head for the last position only
    assert rows["lm_head"]["flops"] == 2 * 4096 * 151936
    assert data["totals"]["floor_ms"] == pytest.approx(sum(r["floor_ms"] for r in data["components"]))
    assert data["dtype"] == "bfloat16" and data["gpu"] == "h100-sxm"
    table = _predict_without_torch("--model", "Qwen/Qwen3-8B", "--len", "16384", "--gpu", "h100-sxm")
    assert table.returncode == 0 and "floor TTFT" in table.stdout


@pytest.mark.parametrize("args,needle", [
    (["--model", "Qwen/Qwen3-8B", "--len", "1024", "--gpu", "h900"], "h100-sxm"),
    (["--model", "Qwen/Qwen3-8B", "--len", "0", "--gpu", "h100-sxm"], "--len 0"),
    (["--model", "Qwen/Qwen3-8B", "--len", "1024", "--gpu", "h100-sxm", "--batch", "0"], "--batch 0"),
    (["--model", "Qwen/Qwen3-8B", "--len", "1024", "--gpu", "h100-sxm", "--efficiency", "1.5"], "--efficiency 1.5"),
    # the A100 has no fp8 tensor cores: its datasheet row has no fp8 peak
    (["--model", "Qwen/Qwen3-8B", "--len", "1024", "--gpu", "a100-80gb", "--dtype", "fp8"], "fp8"),
])
def test_predict_bad_input(args, needle):
    out = cli("predict", *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert needle in out.stderr, out.stderr


def test_calibrate_then_runs_use_the_measured_ceilings(tmp_path, monkeypatch):
    from profiler import calibrate

    # one size each instead of several: the same measurement, in a second instead of ten. The
    # plumbing is under test, not the machine: a shared CI box is busy and noisy, so neither the
    # load nor the spread may refuse here (tests/test_calibrate_honest.py tests both refusals)
    monkeypatch.setitem(calibrate.MATMUL_SIZES, "cpu", (512,))
    monkeypatch.setitem(calibrate.CACHE_MULTIPLES, "cpu", (1,))
    monkeypatch.setattr(calibrate, "BATCH_SECONDS", 0.05)
    monkeypatch.setattr(calibrate, "STABLE_SPREAD", 100.0)
    monkeypatch.setattr(calibrate, "load_average", lambda: 0.0)
    env = {"TTFT_PROFILE_CACHE": str(tmp_path / "cache")}
    calibrated = cli("calibrate", "--json", env=env)
    assert calibrated.returncode == 0, calibrated.stderr
    ceilings = json.loads(calibrated.stdout)
    assert ceilings["flops_per_s"]["float32"] > 0 and ceilings["bytes_per_s"] > 0
    assert (tmp_path / "cache" / "ceilings.json").exists()
    out = tmp_path / "run"
    result = cli("--model", "tiny-llama", "--len", "128", "--warmup", "1", "--repeat", "2", "--no-trace",
                 "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["ceilings"]["source"].startswith("calibrated") and "TTFT floor" in result.stdout
    roof = pd.read_csv(out / "roofline.csv").set_index("component")
    measured = pd.read_csv(out / "breakdown.csv").set_index("component")["ms"]
    peak, bandwidth = run["ceilings"]["flops_per_s"]["float32"], run["ceilings"]["bytes_per_s"]
    for component, row in roof.iterrows():
        floor = max(row["flops"] / peak, row["bytes"] / bandwidth) * 1e3
        assert row["floor_ms"] == pytest.approx(floor, rel=1e-5)
        if measured[component] > 0:  # qk_norm is absent in Llama: no time, no efficiency
            assert row["efficiency"] == pytest.approx(floor / measured[component], rel=1e-4)
        else:
            assert math.isnan(row["efficiency"])


def test_predict_names_a_missing_config_field(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4}')
    out = cli("predict", "--model", str(tmp_path), "--len", "128", "--gpu", "h100-sxm")
    assert out.returncode == 2 and "hidden_size" in out.stderr and "Traceback" not in out.stderr
