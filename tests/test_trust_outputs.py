"""Efficiencies above 1 mean a wrong ceiling: they never scale a prediction below its floor."""
from __future__ import annotations

import math

import pandas as pd

from analyzers.cost.predict import efficiencies_from_run


def test_an_impossible_efficiency_does_not_carry_into_a_prediction():
    roof = pd.DataFrame({"component": ["mlp", "attention", "norm"], "efficiency": [1.49, 0.62, math.nan]})
    got = efficiencies_from_run(object(), roof)
    assert got["attention"] == 0.62
    assert math.isnan(got["mlp"]) and math.isnan(got["norm"])


def test_a_float32_gpu_run_in_tf32_is_held_to_the_tf32_peak():
    import dataclasses

    from analyzers.cost.ceilings import from_datasheet
    from analyzers.cost.hardware import gpu_by_key
    from analyzers.cost.roofline import matmul_dtype
    from tests.test_breakdown import make_run

    ceilings = from_datasheet(gpu_by_key("a100-80gb"))
    base = dataclasses.replace(make_run([1_000_000], []), dtype="float32", device="cuda:0")
    assert matmul_dtype(base, ceilings) == ("float32", None)  # nothing recorded: IEEE fp32
    tf32 = dataclasses.replace(base, precision={"float32_matmul": "tf32"})
    dtype, note = matmul_dtype(tf32, ceilings)
    # the A100 datasheet: 19.5 TFLOP/s fp32, 156 TFLOP/s TF32 (dense)
    assert dtype == "tf32" and ceilings.peak_flops("tf32") == 156e12 and "TF32" in note
    assert matmul_dtype(dataclasses.replace(tf32, device="cpu"), ceilings)[0] == "float32"


def test_gpu_phase_track_is_placed_by_device_time():
    from analyzers.trace.export import device_phase_edges, our_tracks

    # host ranges (integer ns, the trace's clock): the host launched the forward long before the device ran it
    events = [{"ph": "X", "name": f"ttft/{n}", "pid": 1, "tid": 1, "ts": ts, "dur": dur}
              for n, ts, dur in (("h2d", 0, 10), ("sampling", 50, 5), ("d2h", 60, 5))]
    meta = {"phase_clock": "cuda-events", "phase_marks_unix_ns": [1000, 1020, 1500, 1510, 1530]}
    edges = device_phase_edges(meta, base_ns=1000)
    assert edges == [0, 20, 500, 510, 530]
    phases = {e["name"]: (e["ts"], e["dur"]) for e in our_tracks(events, edges) if e.get("cat") == "ttft_phase"}
    assert phases == {"h2d": (0, 20), "forward": (20, 480), "sampling": (500, 10), "d2h": (510, 20)}
    # on a CPU the host ranges are the truth
    assert device_phase_edges({"phase_clock": "host", "phase_marks_unix_ns": [1, 2, 3, 4, 5]}, 0) is None
    host = {e["name"]: (e["ts"], e["dur"]) for e in our_tracks(events) if e.get("cat") == "ttft_phase"}
    assert host["forward"] == (10, 40)


def test_a_run_says_when_an_old_ceilings_cache_is_ignored(tmp_path):
    import json

    from analyzers.cost.ceilings import cache_path
    from tests.conftest import cli

    path = cache_path()  # the test's own cache (the hermetic fixture), never the user's
    path.parent.mkdir(parents=True, exist_ok=True)
    old = {"device_name": "cpu", "flops_per_s": {"float32": 2.2e10}, "bytes_per_s": 1e10, "source": "calibrated",
           "details": {}}
    path.write_text(json.dumps({"AMD EPYC (2 cores, 2 threads)": old}))  # the format before cache v2
    result = cli("--model", "tiny-llama", "--len", "16", "--warmup", "0", "--repeat", "1", "--no-trace",
                 "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "is in an older format (1 entry" in result.stderr and "ttft-profile calibrate" in result.stderr
