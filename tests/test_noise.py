"""A run's own noise: TTFT spread, OS contention over the repeats, the verdict, and outlier components.

Expected numbers are worked out by hand from the stated rules (analyzers/noise.py, profiler/contention.py);
one test profiles tiny-llama in-process while three busy processes compete for this machine's CPUs.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import pytest

from analyzers.components import breakdown
from analyzers.noise import (
    LOAD_EXCESS_LIMIT,
    NIVCSW_LIMIT,
    OTHERS_BUSY_LIMIT,
    STEAL_LIMIT,
    assess_noise,
    contention_signals,
    outlier_components,
    ttft_spread,
)
from analyzers.run import Run, RunFormatError, load_run
from analyzers.store import save_run
from analyzers.tables import compute_tables
from profiler.contention import Reading, contention
from tests.conftest import cli

MS = 1_000_000
QUIET = {"window_s": 2.0, "cpus": 4, "load1": 1.2, "own_cpus": 1.0, "nivcsw": 40, "nivcsw_per_s": 20.0,
         "others_busy_share": 0.03, "steal_share": 0.0, "proc_stat": "ok"}


def make_run(ttft_ms, rows=(), contention_readings=None) -> Run:
    return Run(model="hand-made", seq_len=16, batch=1, dtype="float32", device="cpu", device_name="cpu",
               attn="sdpa", warmup=0, repeat=len(ttft_ms), ttft_ns=[round(t * MS) for t in ttft_ms],
               cold_ttft_ns=99 * MS, component_ns=list(rows), components_present=["embedding", "norm", "mlp"],
               contention=contention_readings)


def row(repeat, component, ms):
    return {"repeat": repeat, "component": component, "layer": None, "detail": None, "ns": round(ms * MS),
            "calls": 1}


@pytest.mark.parametrize("samples,expected", [
    ([10, 11, 12, 13, 20], (20 - 10) / 12),  # under 10 samples p10 = min, p90 = max, p50 = 3rd of 5
    (list(range(20, 0, -1)), (18 - 2) / 10),  # 20 samples: ranks ceil(2) = 2, ceil(10) = 10, ceil(18) = 18
    ([7, 5], (7 - 5) / 5),  # p50 of two = the lower (nearest rank ceil(1.0) = 1)
    ([9], None),
])
def test_ttft_spread_by_hand(samples, expected):
    assert ttft_spread(samples) == pytest.approx(expected) if expected is not None else ttft_spread(samples) is None


def test_contention_signals_by_hand():
    s = contention_signals({**QUIET, "window_s": 2.0, "cpus": 4, "load1": 3.0, "own_cpus": 1.5, "nivcsw": 600})
    assert s["load_excess"] == pytest.approx((3.0 - 1.5) / 4)
    assert s["nivcsw_per_cpu_s"] == pytest.approx(600 / (1.5 * 2.0))  # 3 CPU-seconds of ours
    assert s["others_busy_share"] == 0.03 and s["steal_share"] == 0.0 and s["recorded"]
    # under 0.1 CPU-second of ours, switches per CPU-second is not computed
    assert contention_signals({**QUIET, "own_cpus": 0.01})["nivcsw_per_cpu_s"] is None


def test_a_fake_clean_run_is_quiet():
    noise = assess_noise(make_run([100, 101, 102, 103, 104], contention_readings=QUIET))
    assert noise.spread == pytest.approx(4 / 102) and not noise.noisy and noise.reasons == [] == noise.advice
    assert noise.verdict.startswith("quiet enough to trust: TTFT spread 3.9% over 5 repeats; no contention seen")
    assert "other processes used 3% of the CPUs" in noise.verdict


@pytest.mark.parametrize("reading,value,reason,advice", [
    ("others_busy_share", 0.61, "other processes used 61% of the CPUs (limit 20%)", "a quieter machine"),
    ("steal_share", 0.08, "CPU steal 8% (limit 5%)", "a host without CPU steal"),
    ("load1", 4.0, "load beyond our own threads 0.75 per CPU (limit 0.50)", "a quieter machine"),  # (4 − 1) / 4
    ("nivcsw", 1200, "600 involuntary switches per CPU-second (limit 250)", "pinned threads"),  # 1200 / (1 × 2)
])
def test_each_contention_reading_over_its_limit_makes_the_run_noisy(reading, value, reason, advice):
    noise = assess_noise(make_run([100, 101, 102, 103, 104], contention_readings={**QUIET, reading: value}))
    assert noise.noisy and noise.reasons == [reason]
    assert len(noise.advice) == 1 and noise.advice[0].startswith(advice)
    assert noise.verdict == f"noisy, do not trust small differences: {reason}. Try {noise.advice[0]}."


def test_limits_are_strict_and_a_spread_alone_is_enough():
    at_limits = {**QUIET, "others_busy_share": OTHERS_BUSY_LIMIT, "steal_share": STEAL_LIMIT,
                 "load1": 1.0 + LOAD_EXCESS_LIMIT * 4, "nivcsw": NIVCSW_LIMIT * 2.0}
    assert not assess_noise(make_run([100, 101, 102], contention_readings=at_limits)).noisy
    wide = assess_noise(make_run([100, 130, 112], contention_readings=QUIET))  # (130 − 100) / 112 = 27%
    assert wide.noisy and wide.reasons == ["TTFT spread 27% over 3 repeats (limit 10%)"]
    assert wide.advice == ["more repeats (20 or more) so the median settles"]


def test_a_run_without_readings_is_judged_on_its_spread():
    noise = assess_noise(make_run([50]))
    assert not noise.noisy and noise.spread is None
    assert noise.verdict == ("too few repeats to judge: one repeat, so no spread; no contention readings in this run; "
                             "use --repeat 7 or more.")


def stat_reading(wall_s, own_cpu_s, nivcsw, ticks, stat_cpus=2) -> Reading:
    return Reading(wall_s, own_cpu_s, nivcsw, tuple(ticks) + (0, 0), stat_cpus)


def test_contention_from_proc_stat_deltas_by_hand():
    tick = 1 / os.sysconf("SC_CLK_TCK")
    # 2 CPUs for 500 ticks in all: user +300, system +60, idle +100, iowait +20, steal +20
    before = stat_reading(10.0, 5.0, 100, (1000, 0, 200, 5000, 0, 0, 0, 0))
    after = stat_reading(12.5, 5.0 + 150 * tick, 600, (1300, 0, 260, 5100, 20, 0, 0, 20))
    c = contention(before, after, load1=2.5, cpus=2)
    busy_ticks = 500 - 100 - 20 - 20  # 360 ticks busy, 150 of them ours
    assert c["others_busy_share"] == pytest.approx((busy_ticks - 150) / 500)
    assert c["steal_share"] == pytest.approx(20 / 500)
    assert c["window_s"] == pytest.approx(2.5) and c["nivcsw"] == 500 and c["nivcsw_per_s"] == pytest.approx(200)
    assert c["own_cpus"] == pytest.approx(150 * tick / 2.5) and c["load1"] == 2.5 and c["proc_stat"] == "ok"
    # /proc/stat counting other CPUs than ours, or too few ticks to mean anything: no shares, and why
    other_cpus = contention(before, stat_reading(12.5, 6.0, 600, after.cpu_ticks[:8], stat_cpus=64), 2.5, 2)
    assert other_cpus["others_busy_share"] is None and other_cpus["proc_stat"].startswith("counts 64 CPUs")
    short = contention(before, stat_reading(10.1, 5.0, 100, (1010, 0, 200, 5010, 0, 0, 0, 0)), 2.5, 2)
    assert short["steal_share"] is None and short["proc_stat"] == "window too short (20 ticks)"
    absent = contention(Reading(0.0, 0.0, 0, None, None), Reading(1.0, 0.5, 3, None, None), None, 2)
    assert absent["others_busy_share"] is None and absent["proc_stat"] == "absent"


def outlier_run() -> Run:
    """Five repeats; repeat 2 is the median TTFT and its embedding took 23.34 ms against ~0.37 elsewhere."""
    embedding = [0.33, 0.35, 23.34, 0.38, 0.40]
    norm = [1.0, 1.1, 1.6, 1.2, 1.05]  # 1.6 is 0.4 above the others' max, under half their median (0.54)
    mlp = [10.0, 40.0, 9.0, 12.0, 45.0]  # 9 is 1 below the others' min, inside their range of 35
    rows, ttft = [], []
    for r in range(5):
        rows += [row(r, "embedding", embedding[r]), row(r, "norm", norm[r]), row(r, "mlp", mlp[r])]
        ttft.append(embedding[r] + norm[r] + mlp[r] + 1.0)  # other = 1 ms in every repeat
    return make_run(ttft, rows, contention_readings=QUIET)


def test_an_outlier_of_the_median_repeat_is_named_with_its_median():
    run = outlier_run()
    out = outlier_components(run).set_index("component")
    assert list(out.index) == ["embedding"]
    emb = out.loc["embedding"]
    assert emb["ms"] == pytest.approx(23.34) and emb["median_ms"] == pytest.approx(0.38)
    assert (emb["others_min_ms"], emb["others_max_ms"]) == pytest.approx((0.33, 0.40))
    assert emb["excess_ms"] == pytest.approx(23.34 - 0.40)
    table = breakdown(run)  # the table stays the median-TTFT repeat: it still sums to that TTFT
    assert table["ms"].sum() == pytest.approx(23.34 + 1.6 + 9.0 + 1.0)


def test_the_terminal_marks_the_outlier_and_says_the_verdict(tmp_path):
    folder = tmp_path / "run"
    save_run(outlier_run(), folder)
    shown = cli("analyze", str(folder))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any("embedding" in line and "23.34 !" in line for line in lines)
    assert not any("norm" in line and " !" in line for line in lines if "│" in line)
    assert ("! embedding: 23.340 ms in the median-TTFT repeat the table shows, but 0.330–0.400 ms in the other "
            "repeats (median 0.380 ms over all 5)") in shown.stdout
    # TTFTs 12.33, 42.45, 34.94, 14.58, 47.45: p50 34.94, (47.45 − 12.33) / 34.94 = 101%
    assert "noise: noisy, do not trust small differences: TTFT spread 101% over 5 repeats" in shown.stdout
    data = json.loads(cli("analyze", str(folder), "--json").stdout)
    assert data["noise"]["noisy"] and data["noise"]["spread"] == pytest.approx((47.45 - 12.33) / 34.94)
    assert [o["component"] for o in data["noise"]["outliers"]] == ["embedding"]
    assert data["contention"]["others_busy_share"] == 0.03


def test_contention_round_trips_and_old_runs_still_load(tmp_path):
    save_run(outlier_run(), tmp_path / "r")
    assert load_run(tmp_path / "r").contention == QUIET
    data = json.loads((tmp_path / "r" / "run.json").read_text())
    del data["contention"]  # a run written before the field existed
    (tmp_path / "r" / "run.json").write_text(json.dumps(data))
    assert load_run(tmp_path / "r").contention is None
    (tmp_path / "r" / "run.json").write_text(json.dumps({**data, "contention": [1, 2]}))
    with pytest.raises(RunFormatError, match="field 'contention'"):
        load_run(tmp_path / "r")


@contextlib.contextmanager
def spinners(count: int = 3):
    """Processes that burn a CPU each (on this 2-core machine, more runnable work than CPUs); killed after."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let them start spinning
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_a_run_under_cpu_load_says_it_is_noisy(tiny_model):
    import torch

    from profiler.measure import profile_prefill

    model = tiny_model("tiny-llama")  # built (torch and transformers imported) before the load starts
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: no parallel region waits on a preempted sibling, so the test stays short
    try:
        with spinners() as procs:
            # long enough (>= 50 scheduler ticks) for /proc/stat to show the others: a window of a few ticks says nothing
            run = profile_prefill(model, 1024, warmup=1, repeat=8, telemetry_interval_ms=None)
            assert all(proc.poll() is None for proc in procs)  # they competed for the whole run
    finally:
        torch.set_num_threads(threads)
    noise = compute_tables(run).noise
    assert run.contention["window_s"] > 0 and run.contention["cpus"] >= 1
    contended = [r for r in noise.reasons if not r.startswith("TTFT spread")]
    assert noise.noisy and contended, (run.contention, noise.verdict)
    assert noise.verdict.startswith("noisy, do not trust small differences")
