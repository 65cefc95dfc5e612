"""The telemetry sampler against a scripted NVML, and the span/counter analysis by hand.

Sampler tests that check values use an interval far longer than the test, so
the thread never ticks on its own: the samples are exactly the one in start(),
the ones the test takes with sample_once(), and the closing one in stop(),
each at the next step of a fake clock. Thread tests only check that the
thread samples and is gone afterwards, never how long anything took.
"""
from __future__ import annotations

import itertools
import math
import threading
import time

import pandas as pd
import pytest

from analyzers.errors import ParameterError
from analyzers.telemetry.samples import CLOCK_EVENT_REASONS, counter_events, span_averages, throttle_reason_names
from analyzers.telemetry.samples import write_samples_csv as write_csv
from profiler.telemetry import THREAD_NAME, Clocks, NullSampler, Sampler, start_sampler
from profiler.telemetry import nvml as nvml_source
from tests import fake_nvml
from tests.fake_nvml import GPU_SAMPLES, MEM_SAMPLES, POWER_INSTANT, SM, FakeNVML

T0 = 1_700_000_000_000_000_000  # wall clock ns of the first sample
STEP = 50_000_000  # 50 ms between fake clock readings
NEVER = 1e9  # interval_ms: the thread waits for stop, never ticks on its own
GPM_NAMES = {m for m, _ in nvml_source.GPM_METRICS}


def sampler(fake=None, device_index=0, interval_ms=NEVER, cpu_step=None) -> Sampler:
    wall, perf = itertools.count(T0, STEP), itertools.count(0, STEP)
    extra = {"cpu": itertools.count(0, cpu_step).__next__} if cpu_step else {}
    clocks = Clocks(wall=wall.__next__, perf=perf.__next__, **extra)
    return Sampler(interval_ms, device_index, nvml=fake, clocks=clocks)


def run(s: Sampler, ticks: int = 4) -> list[dict]:
    """start + (ticks - 2) manual samples + stop = `ticks` samples at perf 0, 50, 100, ... ms."""
    with s:
        for _ in range(ticks - 2):
            s.sample_once()
    return s.samples()


def track(rows: list[dict], metric: str) -> list[tuple[int, float]]:
    return [(r["perf_ns"], r["value"]) for r in rows if r["metric"] == metric]


def no_sampler_thread() -> bool:
    return not [t for t in threading.enumerate() if t.name == THREAD_NAME]


# -- the fake is the real library's shape -------------------------------------------------
def test_fake_and_sampler_use_real_nvidia_ml_py_names():
    pynvml = pytest.importorskip("pynvml")
    for name, value in fake_nvml.CONSTANTS.items():
        assert getattr(pynvml, name) == value, name
    for code, name in fake_nvml.ERROR_CLASS_NAMES.items():
        assert type(pynvml.NVMLError(code)).__name__ == name
        assert issubclass(getattr(pynvml, name), pynvml.NVMLError)
    for name in dir(FakeNVML):
        if name.startswith(("nvml", "c_nvml")):
            assert hasattr(pynvml, name), name
    used = [a for p in nvml_source.POLLED for c in p.calls for a in (c.function, *c.args)]
    used += [c for _, c, _ in nvml_source.UTILISATION] + [c for _, c in nvml_source.GPM_METRICS]
    used += [c for c, _ in nvml_source.SAMPLE_VALUE_FIELDS] + list(nvml_source.ABSENT_ERRORS)
    assert [name for name in used if not hasattr(pynvml, name)] == []


def test_clock_event_table_matches_nvml_constants():
    pynvml = pytest.importorskip("pynvml")
    for bit, name in CLOCK_EVENT_REASONS:
        assert getattr(pynvml, f"nvmlClocksEventReason{name}") == bit


def test_throttle_reason_names_decodes_bits_and_keeps_unknown_ones():
    assert throttle_reason_names(0) == []
    assert throttle_reason_names(0x4 | 0x40) == ["SwPowerCap", "HwThermalSlowdown"]
    assert throttle_reason_names(0x1 | 0x400) == ["GpuIdle", "0x400"]


# -- NVML -------------------------------------------------------------------------------------
def test_normal_samples_are_scripted_values_on_both_clocks():
    fake = FakeNVML(values={("nvmlDeviceGetClockInfo", SM): [1980, 1755, 1410, 1980]})
    s = sampler(fake)
    rows = run(s)
    assert (s.kind, s.warning, s.device) == ("nvml", None, "nvml:0")
    ticks = [0, STEP, 2 * STEP, 3 * STEP]
    assert track(rows, "sm_clock_mhz") == list(zip(ticks, [1980.0, 1755.0, 1410.0, 1980.0], strict=True))
    assert track(rows, "mem_clock_mhz") == [(t, 2619.0) for t in ticks]
    assert track(rows, "power_w") == [(t, 350.0) for t in ticks]  # mW -> W
    assert track(rows, "temp_c") == [(t, 61.0) for t in ticks]
    assert track(rows, "mem_used_bytes") == [(t, 8 * 2**30) for t in ticks]
    assert track(rows, "clock_event_reasons") == [(t, 0x4) for t in ticks]
    # no sample buffer on this fake: utilisation is polled
    assert track(rows, "gpu_util_pct") == [(t, 97.0) for t in ticks]
    assert track(rows, "mem_util_pct") == [(t, 41.0) for t in ticks]
    # GPM: one window from the first sample (0 ms) to the first one >= 100 ms later; the row sits at its start
    assert {m: track(rows, m) for m in GPM_NAMES} == {
        "gpm_sm_util_pct": [(0, 80.0)], "gpm_sm_occupancy_pct": [(0, 35.0)],
        "gpm_tensor_util_pct": [(0, 60.0)], "gpm_dram_bw_util_pct": [(0, 70.0)]}
    assert all(r["t_ns"] - r["perf_ns"] == T0 and r["device"] == "nvml:0" for r in rows)
    assert s.gaps == {} and s.unsupported == []
    assert s.window() == (T0, T0 + 3 * STEP, len(rows))
    assert fake.initialised == 0  # nvmlShutdown after the run
    assert sorted(map(id, fake.freed)) == sorted(map(id, fake.allocated)) and len(fake.allocated) == 2


def test_gpm_windows_follow_each_other():
    fake = FakeNVML(values={"gpm": {2: [80.0, 20.0], 3: 35.0, 5: 60.0, 10: 70.0}})
    rows = run(sampler(fake), ticks=6)  # 0..250 ms: windows 0-100 and 100-200
    assert track(rows, "gpm_sm_util_pct") == [(0, 80.0), (2 * STEP, 20.0)]


def test_gpu_without_gpm_has_no_gpm_rows_and_no_error():
    fake = FakeNVML(gpm=False)
    s = sampler(fake)
    rows = run(s, ticks=6)
    assert not GPM_NAMES & {r["metric"] for r in rows}
    assert s.gaps == {} and fake.allocated == [] and fake.calls["nvmlGpmSampleGet"] == 0
    assert track(rows, "sm_clock_mhz")  # the rest is sampled as usual


def test_nvml_error_mid_run_is_a_gap_and_sampling_continues():
    fake = FakeNVML(fail={("nvmlDeviceGetClockInfo", SM): {1: fake_nvml.NVML_ERROR_UNKNOWN},
                          "nvmlDeviceGetFieldValues": {2: fake_nvml.NVML_ERROR_GPU_IS_LOST},
                          "nvmlGpmSampleGet": {1: fake_nvml.NVML_ERROR_UNKNOWN}})
    s = sampler(fake)
    rows = run(s, ticks=6)
    sm = track(rows, "sm_clock_mhz")
    assert [t for t, _ in sm] == [0, STEP, 2 * STEP, 3 * STEP, 4 * STEP, 5 * STEP]
    assert math.isnan(sm[1][1]) and [v for _, v in sm[2:]] == [1980.0] * 4
    assert math.isnan(track(rows, "power_w")[2][1])
    assert track(rows, "mem_clock_mhz")[1] == (STEP, 2619.0)  # the same tick's other reads are kept
    # GPM: the second sample (100 ms) fails -> gap rows there; a new window starts at 150 ms, ends at 250 ms
    assert [(t, math.isnan(v)) for t, v in track(rows, "gpm_sm_util_pct")] == [(2 * STEP, True), (3 * STEP, False)]
    assert s.gaps == {"sm_clock_mhz": 1, "power_w": 1, **{m: 1 for m in GPM_NAMES}}
    assert s.gap_errors["sm_clock_mhz"] == "NVMLError_Unknown"
    assert s.gap_errors["power_w"] == "NVMLError_GpuIsLost"


def test_gpm_metric_failing_inside_metrics_get_is_a_gap_for_that_metric_only():
    fake = FakeNVML(fail={"gpm": {(0, 10): fake_nvml.NVML_ERROR_NOT_SUPPORTED}})
    s = sampler(fake)
    rows = run(s)
    assert math.isnan(track(rows, "gpm_dram_bw_util_pct")[0][1])
    assert track(rows, "gpm_sm_util_pct") == [(0, 80.0)]
    assert s.gap_errors == {"gpm_dram_bw_util_pct": "NVMLError_NotSupported"}


def test_unsupported_metric_is_left_out_not_a_gap():
    fake = FakeNVML(fail={("nvmlDeviceGetFieldValues", POWER_INSTANT): fake_nvml.NVML_ERROR_NOT_SUPPORTED,
                          "nvmlDeviceGetPowerUsage": fake_nvml.NVML_ERROR_NOT_SUPPORTED})
    s = sampler(fake)
    rows = run(s)
    assert track(rows, "power_w") == [] and s.unsupported == ["power_w"] and s.gaps == {}
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 1  # asked once, not every tick
    assert fake.calls["nvmlDeviceGetFieldValues"] == 1


# -- power: instantaneous where the driver has it, the 1-s average labelled as one elsewhere --------
def test_power_is_the_instantaneous_field_and_the_notes_say_so():
    fake = FakeNVML(values={("nvmlDeviceGetFieldValues", POWER_INSTANT): [410_000, 655_500, 300_000, 290_000],
                            "nvmlDeviceGetPowerUsage": 350_000})
    s = sampler(fake)
    rows = run(s)
    assert [v for _, v in track(rows, "power_w")] == [410.0, 655.5, 300.0, 290.0]
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 0
    assert nvml_source.POWER_INSTANT_NOTE in s.notes and nvml_source.POWER_AVERAGE_NOTE not in s.notes


@pytest.mark.parametrize("how", ["field not offered", "library without the call"])
def test_power_falls_back_to_the_one_second_average_and_labels_it(how):
    if how == "field not offered":  # the call works, the field's own nvmlReturn says NOT_SUPPORTED (pre-Ampere)
        fake = FakeNVML(fail={("nvmlDeviceGetFieldValues", POWER_INSTANT): fake_nvml.NVML_ERROR_NOT_SUPPORTED})
    else:
        fake = FakeNVML(missing=("nvmlDeviceGetFieldValues",))
    s = sampler(fake)
    rows = run(s)
    assert track(rows, "power_w") == [(t, 350.0) for t in (0, STEP, 2 * STEP, 3 * STEP)]
    assert nvml_source.POWER_AVERAGE_NOTE in s.notes and nvml_source.POWER_INSTANT_NOTE not in s.notes
    assert s.gaps == {} and s.unsupported == []


def test_utilisation_is_named_kernel_activity_in_the_notes_and_gpm_is_kept():
    s = sampler(FakeNVML())
    rows = run(s)
    assert s.notes.count(nvml_source.UTILISATION_NOTE) == 1
    assert "any kernel ran" in nvml_source.UTILISATION_NOTE and "not the share of SMs" in nvml_source.UTILISATION_NOTE
    assert {"gpm_sm_util_pct", "gpm_dram_bw_util_pct"} <= {r["metric"] for r in rows}


def test_max_clocks_from_nvml_and_nothing_without_it():
    assert nvml_source.max_clocks_mhz(0, FakeNVML()) == {"sm": 1980.0, "mem": 2619.0}
    assert nvml_source.max_clocks_mhz(0, FakeNVML(init_error=fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED)) == {}
    assert nvml_source.max_clocks_mhz(5, FakeNVML()) == {}  # no such device
    assert nvml_source.max_clocks_mhz(None) == {}  # a CPU
    fake = FakeNVML(missing=("nvmlDeviceGetMaxClockInfo",))
    assert nvml_source.max_clocks_mhz(0, fake) == {} and fake.initialised == 0


def test_older_driver_and_library_fall_back_to_the_older_calls():
    fake = FakeNVML(missing=("nvmlDeviceGetCurrentClocksEventReasons",),
                    fail={"nvmlDeviceGetTemperatureV": fake_nvml.NVML_ERROR_FUNCTION_NOT_FOUND})
    s = sampler(fake)
    rows = run(s)
    assert len(track(rows, "clock_event_reasons")) == 4 and len(track(rows, "temp_c")) == 4
    assert fake.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 4
    assert fake.calls["nvmlDeviceGetTemperatureV"] == 1 and fake.calls["nvmlDeviceGetTemperature"] == 4
    assert s.gaps == {} and s.unsupported == []


def test_utilisation_from_the_driver_sample_buffer():
    start_us = T0 // 1000
    buffer = {GPU_SAMPLES: [(start_us - 5_000, 11), (start_us + 10_000, 55), (start_us + 30_000, 66)],
              MEM_SAMPLES: [(start_us + 20_000, 22)]}
    fake = FakeNVML(buffer=buffer)
    s = sampler(fake)
    with s:
        buffer[GPU_SAMPLES].append((start_us + 60_000, 77))  # the driver adds one while we run
        s.sample_once()
        s.sample_once()  # nothing new: NVML_ERROR_NOT_FOUND, neither a row nor a gap
    rows = s.samples()
    # buffered samples keep the driver's timestamps (µs -> ns), before the run's start left out
    assert track(rows, "gpu_util_pct") == [(10_000_000, 55.0), (30_000_000, 66.0), (60_000_000, 77.0)]
    assert [r["t_ns"] for r in rows if r["metric"] == "gpu_util_pct"] == [T0 + 10_000_000, T0 + 30_000_000,
                                                                          T0 + 60_000_000]
    assert track(rows, "mem_util_pct") == [(20_000_000, 22.0)]
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 0 and s.gaps == {}


def test_device_nvml_cannot_find_falls_back_to_cpu_with_the_reason():
    fake = FakeNVML(device_count=1)
    s = sampler(fake, device_index=3)
    run(s)
    assert s.kind == "cpu" and fake.initialised == 0
    assert s.warning == ("NVML unavailable (NVMLError_InvalidArgument for device 3): "
                         "recording process CPU utilisation and memory instead")


# -- no NVML ----------------------------------------------------------------------------------
def test_library_missing_records_process_cpu_and_memory_with_one_warning():
    s = sampler(FakeNVML(init_error=fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND), cpu_step=STEP // 2)
    rows = run(s)
    assert s.kind == "cpu" and s.device == "cpu"
    assert s.warning == ("NVML unavailable (NVMLError_LibraryNotFound): "
                         "recording process CPU utilisation and memory instead")
    assert {r["metric"] for r in rows} == {"cpu_util_pct", "rss_bytes"}
    # 25 ms of CPU per 50 ms of wall clock = half a core; no rate for the first sample
    assert track(rows, "cpu_util_pct") == [(t, 50.0) for t in (STEP, 2 * STEP, 3 * STEP)]
    assert len(track(rows, "rss_bytes")) == 4 and all(v > 0 for _, v in track(rows, "rss_bytes"))
    assert all(r["device"] == "cpu" for r in rows)


def test_cpu_run_samples_the_process_without_a_warning():
    s = sampler(FakeNVML(), device_index=None)
    rows = run(s)
    assert (s.kind, s.warning) == ("cpu", None)
    assert {r["metric"] for r in rows} == {"cpu_util_pct", "rss_bytes"}


def test_real_nvidia_ml_py_samples_or_warns_once():
    pytest.importorskip("pynvml")
    with Sampler(interval_ms=5, device_index=0) as s:
        pass
    assert s.samples()
    assert s.kind == "nvml" or (s.kind == "cpu" and s.warning.startswith("NVML unavailable ("))
    assert no_sampler_thread()


def test_interval_must_be_positive():
    with pytest.raises(ParameterError, match="telemetry_interval_ms") as raised:
        Sampler(interval_ms=0)
    assert (raised.value.parameter, raised.value.value) == ("telemetry_interval_ms", 0)
    assert str(raised.value) == "telemetry_interval_ms 0 must be positive; use the default 10."


# -- the thread never outlives the run --------------------------------------------------------
def wait_for_thread_ticks(s: Sampler, after: int) -> None:
    """Until the thread itself has sampled (bounded, so a broken thread fails instead of hanging)."""
    deadline = time.monotonic() + 10
    while s.window()[2] <= after and time.monotonic() < deadline:
        time.sleep(0.001)
    assert s.window()[2] > after


@pytest.mark.parametrize("kind", ["nvml", "cpu"])
@pytest.mark.parametrize("exit_by", [None, ValueError, KeyboardInterrupt])
def test_thread_is_joined_on_every_exit_path(kind, exit_by):
    fake = FakeNVML() if kind == "nvml" else FakeNVML(init_error=fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED)
    s = Sampler(interval_ms=1, device_index=0, nvml=fake)

    def body():
        with s:
            assert s._thread.is_alive() and not no_sampler_thread()
            wait_for_thread_ticks(s, s.window()[2])
            if exit_by is not None:
                raise exit_by("the forward failed")

    if exit_by is None:
        body()
    else:
        with pytest.raises(exit_by):
            body()
    assert no_sampler_thread() and not s._thread.is_alive()
    assert fake.initialised == 0
    s.stop()  # idempotent
    with pytest.raises(RuntimeError):
        s.start()


def test_stop_without_start_is_harmless():
    Sampler(device_index=None).stop()
    assert no_sampler_thread()


# -- what the capture code calls ----------------------------------------------------------
def test_telemetry_off_is_a_null_sampler_that_answers_with_nothing():
    s = start_sampler("cpu", None)
    assert isinstance(s, NullSampler) and no_sampler_thread()
    assert (s.wants_spans, s.samples(), s.summary([], None)) == (False, [], None)
    s.stop()
    s.stop()  # idempotent, like a real one


def test_start_sampler_on_a_cpu_samples_the_process_and_wants_spans():
    s = start_sampler("cpu", 1)
    try:
        assert s.kind == "cpu" and s.wants_spans and not no_sampler_thread()
    finally:
        s.stop()
    s.stop()
    assert no_sampler_thread() and {r["metric"] for r in s.samples()} >= {"rss_bytes"}
    ms = 1_000_000
    first_perf = s.samples()[0]["perf_ns"]
    summary = s.summary([(first_perf, first_perf + ms, first_perf + 2 * ms, first_perf + 3 * ms, first_perf + 4 * ms)],
                        None)
    assert (summary["kind"], summary["device"], summary["warning"], summary["file"]) == ("cpu", "cpu", None, "nvml.csv")
    assert summary["samples"] == len(s.samples()) and summary["interval_ms"] == 1.0
    assert {r["group"] for r in summary["attributed"]} == {"phase"}


def test_start_sampler_refuses_a_bad_interval_in_library_words():
    with pytest.raises(ParameterError, match="telemetry_interval_ms -5 must be positive"):
        start_sampler("cpu", -5)
    assert no_sampler_thread()


def test_only_a_process_sampler_on_a_cpu_wants_spans():
    nvml = sampler(FakeNVML())
    process_for_gpu = sampler(FakeNVML(init_error=fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED))
    process_for_cpu = sampler(FakeNVML(), device_index=None)
    assert not any(s.wants_spans for s in (nvml, process_for_gpu, process_for_cpu))  # not started: unknown
    for s in (nvml, process_for_gpu, process_for_cpu):
        run(s)
    assert (nvml.kind, process_for_gpu.kind, process_for_cpu.kind) == ("nvml", "cpu", "cpu")
    assert [s.wants_spans for s in (nvml, process_for_gpu, process_for_cpu)] == [False, False, True]
    summary = nvml.summary([(0, STEP, 2 * STEP, 3 * STEP, 4 * STEP)], None)
    assert summary["kind"] == "nvml" and summary["device"] == "nvml:0" and summary["window_ms"] == 150.0
    assert summary["gaps"] == {} and summary["unsupported"] == []
    assert summary["notes"] == [nvml_source.POWER_INSTANT_NOTE, nvml_source.UTILISATION_NOTE]  # what was read


# -- nvml.csv ---------------------------------------------------------------------------------
def test_write_csv_round_trips_with_gaps_as_nan(tmp_path):
    rows = [{"t_ns": T0, "perf_ns": 0, "device": "nvml:0", "metric": "mem_used_bytes", "value": 85899345920},
            {"t_ns": T0 + 1, "perf_ns": 1, "device": "nvml:0", "metric": "power_w", "value": float("nan")},
            {"t_ns": T0 + 2, "perf_ns": 2, "device": "nvml:0", "metric": "power_w", "value": 351.25}]
    path = write_csv(rows, tmp_path)
    assert path == tmp_path / "nvml.csv"
    df = pd.read_csv(path)
    assert list(df.columns) == ["t_ns", "perf_ns", "device", "metric", "value"]
    assert df["t_ns"].tolist() == [T0, T0 + 1, T0 + 2]
    assert df["value"][0] == 85899345920 and math.isnan(df["value"][1]) and df["value"][2] == 351.25
    assert [p.name for p in tmp_path.iterdir()] == ["nvml.csv"]  # no temp file left behind


# -- analysis ---------------------------------------------------------------------------------
MS = 1_000_000


def sample_rows(metric: str, values: list, step_ms: int = 10) -> list[dict]:
    return [{"t_ns": T0 + i * step_ms * MS, "perf_ns": i * step_ms * MS, "device": "nvml:0", "metric": metric,
             "value": v} for i, v in enumerate(values)]


def test_span_averages_by_hand_and_the_too_short_note():
    rows = sample_rows("gpu_util_pct", [10, 20, 30, float("nan"), 50, 60])  # at 0, 10, ..., 50 ms
    rows += sample_rows("clock_event_reasons", [0x1, 0x4, 0x1, 0x40, 0x1, 0x1])
    spans = [("attention", 10 * MS, 30 * MS), ("mlp", 12 * MS, 18 * MS), ("tail", 20 * MS, 50 * MS)]
    out = span_averages(pd.DataFrame(rows), spans)
    got = {(r.span, r.metric): r for r in out.itertuples()}
    # attention: 20, 30 and a gap at 30 ms -> only 2 samples
    att = got[("attention", "gpu_util_pct")]
    assert (att.samples, att.gaps, math.isnan(att.value)) == (2, 1, True)
    assert att.note == "span of 20 ms is shorter than 3 samples at 10 ms"
    mlp = got[("mlp", "gpu_util_pct")]
    assert (mlp.samples, mlp.note) == (0, "span of 6 ms is shorter than 3 samples at 10 ms")
    tail = got[("tail", "gpu_util_pct")]
    assert (tail.samples, tail.gaps, tail.value, tail.note) == (3, 1, (30 + 50 + 60) / 3, "")
    # throttle reasons are OR-ed, not averaged: attention 0x4 | 0x1 | 0x40, tail 0x1 | 0x40 | 0x1 | 0x1
    assert got[("attention", "clock_event_reasons")].value == 0x45
    assert got[("tail", "clock_event_reasons")].value == 0x41
    assert list(out.columns) == ["span", "device", "metric", "start_ns", "end_ns", "duration_ms", "samples",
                                 "gaps", "value", "note"]


def test_span_long_enough_but_emptied_by_gaps_says_so():
    rows = sample_rows("power_w", [300, float("nan"), float("nan"), float("nan"), 310])
    out = span_averages(rows, [("prefill", 0, 40 * MS)])
    assert out["note"][0] == "span of 40 ms holds 2 power_w samples, fewer than 3 (3 lost to NVML errors)"
    assert math.isnan(out["value"][0])


def test_span_ending_before_it_starts_is_bad_input():
    from analyzers.errors import InputError

    with pytest.raises(InputError, match="ends .* before it starts"):
        span_averages(sample_rows("power_w", [300]), [("backwards", 10 * MS, 5 * MS)])


def test_span_note_quotes_each_tracks_own_cadence():
    rows = sample_rows("gpm_sm_util_pct", [70, 80, 90], step_ms=100)
    out = span_averages(rows, [("layer", 0, 150 * MS)])
    assert out["note"][0] == "span of 150 ms is shorter than 3 samples at 100 ms"


def test_counter_events_convert_to_trace_microseconds_and_skip_gaps():
    base = T0 + 5 * MS
    rows = sample_rows("power_w", [300, float("nan"), 310.5])  # t = T0, T0 + 10 ms, T0 + 20 ms
    events = counter_events(pd.DataFrame(rows), base, pid=7)
    assert events == [
        {"ph": "C", "name": "power_w", "pid": 7, "ts": -5000.0, "args": {"power_w": 300}},
        {"ph": "C", "name": "power_w", "pid": 7, "ts": 15000.0, "args": {"power_w": 310.5}},
    ]
    # inside a window: the value in force at its start, then the samples in it
    windowed = counter_events(rows, base, pid=7, window_ns=(base, base + 20 * MS))
    assert [(e["ts"], e["args"]["power_w"]) for e in windowed] == [(0.0, 300), (15000.0, 310.5)]
