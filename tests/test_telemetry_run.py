"""Telemetry in a real CPU run, its attribution to phases and components, and clock-scaled rooflines."""
from __future__ import annotations

import gzip
import json
import math
import threading

import pandas as pd
import pytest

from analyzers.components import breakdown
from analyzers.cost.ceilings import Ceilings
from analyzers.cost.roofline import effective_ceilings, run_roofline
from analyzers.store import save_run
from analyzers.telemetry.spans import attribute_samples, exclusive_ms
from profiler import profile_prefill
from tests.test_breakdown import make_run, row


def test_cpu_run_records_samples_and_counter_tracks(tmp_path, tiny_model):
    run = profile_prefill(tiny_model("tiny-llama"), 1024, warmup=1, repeat=3, trace_dir=str(tmp_path),
                          telemetry_interval_ms=5)
    save_run(run, tmp_path)
    samples = pd.read_csv(tmp_path / "nvml.csv")
    assert set(samples["metric"]) == {"cpu_util_pct", "rss_bytes"}
    assert (samples.dropna()["value"] >= 0).all()
    assert run.telemetry["kind"] == "cpu" and run.telemetry["warning"] is None
    trace = json.loads(gzip.decompress((tmp_path / "trace.json.gz").read_bytes()))  # still valid JSON
    counters = [e for e in trace["traceEvents"] if e.get("ph") == "C"]
    assert {e["name"] for e in counters} <= {"cpu_util_pct", "rss_bytes"} and counters
    assert all(isinstance(e["ts"], float) and e["args"] for e in counters)
    names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    assert names[counters[0]["pid"]] == "telemetry"
    # counters lie inside the traced prefill's time span
    slices = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    lo, hi = min(e["ts"] for e in slices), max(e["ts"] + e["dur"] for e in slices)
    assert all(lo - 1 <= e["ts"] <= hi + 1 for e in counters)


def test_sampler_thread_is_gone_after_a_failing_forward(tiny_model):
    model = tiny_model("tiny-llama")

    def explode(_module, _args):
        raise RuntimeError("boom")

    handle = model.model.layers[2].register_forward_pre_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            profile_prefill(model, 32, warmup=0, repeat=1)
    finally:
        handle.remove()
    assert not [t for t in threading.enumerate() if t.name == "ttft-telemetry"]


def test_samples_land_in_the_innermost_range_and_the_right_phase():
    ms = 1_000_000
    # one repeat: h2d 0-1 ms, forward 1-9 ms, sampling 9-9.5 ms, d2h 9.5-10 ms
    marks = [(0, 1 * ms, 9 * ms, 9 * ms + ms // 2, 10 * ms)]
    # layer 2-8 ms holds mlp 4-7 ms
    spans = [[("residual", 2 * ms, 8 * ms, 0), ("mlp", 4 * ms, 7 * ms, 1)]]
    samples = [{"t_ns": 0, "perf_ns": t * ms, "device": "cpu", "metric": "cpu_util_pct", "value": v}
               for t, v in [(1.5, 10), (3, 20), (4.5, 30), (5, 40), (6, 50), (7.5, 60), (8.5, 70)]]
    table = attribute_samples(samples, marks, spans, interval_ms=1.0)
    by = {(r.group, r.name): r for r in table.itertuples()}
    # forward holds all seven samples (1.5..8.5 ms): mean 40
    assert by[("phase", "forward")].value == pytest.approx(40) and by[("phase", "forward")].samples == 7
    assert math.isnan(by[("phase", "h2d")].value) and "fewer than 3" in by[("phase", "h2d")].note
    # mlp (4-7 ms) holds 4.5, 5, 6: mean 40; the layer's own time holds 3 and 7.5: two samples, no average
    assert by[("component", "mlp")].value == pytest.approx(40)
    assert math.isnan(by[("component", "residual")].value) and by[("component", "residual")].samples == 2
    # outside every range but inside the prefill: 1.5 and 8.5 -> other
    assert by[("component", "other")].samples == 2
    assert exclusive_ms(spans) == {"residual": pytest.approx(3.0), "mlp": pytest.approx(3.0)}


def _gpu_run(sm_clock: float | None, reasons: int = 0):
    run = make_run([10_000_000], [row(0, "mlp", 8_000_000)], present=("mlp",))
    run.config = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                  "num_attention_heads": 4, "vocab_size": 100}
    run.layers_built = 1
    run.dtype = "bfloat16"
    run.ceilings = Ceilings("gpu", {"bfloat16": 1000e12}, 2e12, "datasheet: test GPU",
                            {"boost_clock_mhz": 2000.0}).to_dict()
    if sm_clock is not None:
        run.telemetry = {"attributed": [
            {"group": "phase", "name": "forward", "metric": "sm_clock_mhz", "value": sm_clock},
            {"group": "phase", "name": "forward", "metric": "clock_event_reasons", "value": reasons},
        ]}
    return run


def test_slow_measured_clock_scales_the_compute_peak():
    full, note = effective_ceilings(_gpu_run(None))
    assert note is None and full.peak_flops("bfloat16") == 1000e12
    scaled, note = effective_ceilings(_gpu_run(1500.0, reasons=0x4))
    assert scaled.peak_flops("bfloat16") == pytest.approx(750e12)  # 1500 / 2000 of the datasheet
    assert scaled.bytes_per_s == 2e12 and "SwPowerCap" in note and "1,500 of 2,000 MHz" in note
    full_run, slow_run = _gpu_run(None), _gpu_run(1500.0, 0x4)
    compute_full = run_roofline(full_run, breakdown(full_run))[0].set_index("component").loc["mlp", "compute_floor_ms"]
    compute_slow = run_roofline(slow_run, breakdown(slow_run))[0].set_index("component").loc["mlp", "compute_floor_ms"]
    assert compute_slow == pytest.approx(compute_full * 2000 / 1500)


def test_cpu_run_has_no_telemetry_when_switched_off(tiny_model):
    run = profile_prefill(tiny_model("tiny-llama"), 16, warmup=0, repeat=1, telemetry_interval_ms=None)
    assert run.telemetry is None and run.telemetry_samples == []
