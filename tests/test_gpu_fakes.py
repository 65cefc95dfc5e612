"""GPU paths checked on a machine without a GPU: torch.cuda, the environment and NVML are fakes that
record what was asked of them, so each test proves which device, stream, field or flag the code used.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from types import SimpleNamespace

import pytest
import torch

from analyzers.errors import InputError
from analyzers.run import Run
from profiler import build, capture, device, measure
from profiler.recorders import cuda as cuda_recorders
from profiler.recorders import host
from profiler.telemetry import nvml as nvml_source
from tests.fake_nvml import FakeNVML

GIB = 2**30


def _index(device_like) -> int:
    text = str(device_like)
    return int(text.split(":")[1]) if ":" in text else int(text) if text.isdigit() else 0


class FakeCuda:
    """The torch.cuda calls the capture makes; each notes the device it targets (the current one if none)."""

    def __init__(self, count: int = 2):
        self.count, self.current, self.calls, self.ms = count, 0, [], 0.0
        fake = self

        class Event:
            def __init__(self, enable_timing=True):
                self.t = None

            def record(self, stream=None):
                fake.ms += 0.01
                self.t = fake.ms
                fake.calls.append(("event", fake.current))

            def elapsed_time(self, end):
                return end.t - self.t

        self.Event = Event

    def is_available(self):
        return True

    def device_count(self):
        return self.count

    def set_device(self, index):
        self.current = _index(index)
        self.calls.append(("set_device", self.current))

    def current_device(self):
        return self.current

    @contextlib.contextmanager
    def device(self, index):
        before, self.current = self.current, _index(index)
        self.calls.append(("device", self.current))
        try:
            yield
        finally:
            self.current = before

    def synchronize(self, device=None):
        self.calls.append(("synchronize", self.current if device is None else _index(device)))

    def mem_get_info(self, index=None):
        self.calls.append(("mem_get_info", _index(index)))
        return 120 * GIB, 141 * GIB

    def get_device_name(self, index=None):
        return "NVIDIA H200"

    def get_device_properties(self, index=None):
        return SimpleNamespace(name="NVIDIA H200", uuid=None)

    def targets(self, what: str) -> set[int]:
        return {d for w, d in self.calls if w == what}


@pytest.fixture
def fake_cuda(monkeypatch) -> FakeCuda:
    fake = FakeCuda()
    for name in ("is_available", "device_count", "set_device", "current_device", "device", "synchronize",
                 "mem_get_info", "get_device_name", "get_device_properties", "Event"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    return fake


class HostIds:
    """Token ids whose copy 'to the GPU' stays on the CPU (this torch has no CUDA), noting where it went."""

    def __init__(self, ids, seen: list):
        self.ids, self.seen = ids, seen

    def to(self, device):
        self.seen.append(str(device))
        return self.ids


# -- cuda:N ---------------------------------------------------------------------------------------
def test_cuda_1_is_timed_on_cuda_1_from_sync_to_every_event(fake_cuda, tiny_model, monkeypatch):
    floors, copies, clocks = [], [], []
    monkeypatch.setattr(measure, "model_device_dtype", lambda model: ("cuda:1", "float32"))
    monkeypatch.setattr(cuda_recorders, "launch_floor_ns", lambda dev: floors.append(dev) or 4_000)
    max_clocks = nvml_source.max_clocks_mhz
    monkeypatch.setattr(nvml_source, "max_clocks_mhz",
                        lambda target: clocks.append(target) or max_clocks(target, FakeNVML(device_count=2)))
    prepare = measure._prepare

    def prepare_on_host(model, timing, recorder):
        call = prepare(model, timing, recorder)
        call.ids_host = HostIds(call.ids_host, copies)
        return call

    monkeypatch.setattr(measure, "_prepare", prepare_on_host)
    run = measure.profile_prefill(tiny_model(), 8, warmup=1, repeat=2, telemetry_interval_ms=None)
    assert run.device == "cuda:1" and run.timing == "cuda-events"
    assert fake_cuda.targets("synchronize") == {1}  # never a bare synchronize of cuda:0
    assert fake_cuda.targets("event") == {1}  # phase marks and range events, all on cuda:1's stream
    assert ("device", 1) in fake_cuda.calls and fake_cuda.current == 0  # a device context, restored after
    assert floors == ["cuda:1"] and set(copies) == {"cuda:1"}
    assert fake_cuda.targets("mem_get_info") == {1} and clocks == [1]
    assert run.max_clocks_mhz == {"sm": 1980.0, "mem": 2619.0}  # NVML's answer for device 1
    assert run.recorder_stats["events_per_prefill"] <= run.recorder_stats["edges_per_prefill"]
    assert len(run.recorder_stats["device_wait_ns"]) == 2
    assert {r["repeat"] for r in run.host_component_ns} == {0, 1}


def test_a_session_on_cuda_1_makes_it_the_current_device(fake_cuda, monkeypatch):
    from profiler.session import Session
    from profiler.settings import Settings

    monkeypatch.setattr(device, "check_dtype_runs", lambda dtype, dev: None)  # no CUDA kernels in this torch
    session = Session.prepare(Settings(model="tiny-qwen3", seq_lens=(16,), device="cuda:1", dtype="bfloat16"))
    assert session.device == "cuda:1" and ("set_device", 1) in fake_cuda.calls and fake_cuda.current == 1
    assert device.resolve_device("cuda") == "cuda:0" and device.device_index("cuda") == 0
    with pytest.raises(Exception, match="cuda:0 to cuda:1"):
        device.resolve_device("cuda:2")


def test_launch_floor_is_the_cheapest_launch_and_syncs_the_device_it_measured(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: synced.append(dev))
    assert cuda_recorders.launch_floor_ns.__wrapped__("cpu", tries=3) > 0
    assert synced == ["cpu"]


# -- NVTX -----------------------------------------------------------------------------------------
def test_missing_nvtx_is_said_once_on_stderr_and_in_the_run(monkeypatch, capsys, tiny_model):
    monkeypatch.setitem(sys.modules, "nvtx", None)  # `import nvtx` raises ImportError
    monkeypatch.setattr(host, "_nvtx_warned", [False])
    first = host.RangeRecorder(record_function_on=False)
    host.RangeRecorder(record_function_on=False)
    err = capsys.readouterr().err
    assert err.count("nvtx package is not installed") == 1 and "pip install nvtx" in err
    assert first.notices == [host.NVTX_MISSING]
    assert host.RangeRecorder(nvtx_on=False, record_function_on=False).notices == []  # not asked for: silent
    run = measure.profile_prefill(tiny_model(), 8, warmup=0, repeat=1, telemetry_interval_ms=None)
    assert host.NVTX_MISSING in run.notices
    assert "nvtx package" not in capsys.readouterr().err  # still once per process
    # the new fields survive run.json
    back = Run.from_dict(json.loads(json.dumps(run.to_dict())))
    assert back.precision == run.precision and back.precision["float32_matmul"] in ("ieee", "tf32", "bf16")
    assert back.host_component_ns == [] and back.recorder_stats == {} and back.max_clocks_mhz == {}  # host clock


# -- Nsight Systems holding CUPTI ----------------------------------------------------------------
@pytest.mark.parametrize("env, found", [
    ({"NSYS_PROFILING_SESSION_ID": "7"}, "NSYS_PROFILING_SESSION_ID=7"),
    ({"CUDA_INJECTION64_PATH": "/opt/nvidia/nsight-systems/lib/libToolsInjection64.so"}, "CUDA_INJECTION64_PATH"),
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so:/opt/nsight/libToolsInjectionProxy64.so"}, "LD_PRELOAD"),
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so"}, None),
    ({"NVTX_INJECTION64_PATH": ""}, None),
    ({}, None),
])
def test_a_profiling_tool_is_found_in_the_environment_it_sets(env, found):
    tool = capture.profiler_tool(env)
    assert (tool is None) if found is None else tool.startswith(found)


def test_under_nsys_the_gpu_trace_is_said_to_have_no_kernels_before_and_after(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NSYS_PROFILING_SESSION_ID", "3")
    assert capture.tool_notice("cuda:0", nvtx_only=True) is None  # --nvtx-only keeps torch.profiler out
    assert capture.tool_notice("cpu", nvtx_only=False) is None

    def cpu_only_trace(fn, dev, raw):
        assert dev == "cuda:0"
        with open(raw, "w") as fh:
            json.dump({"traceEvents": [{"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 5}]}, fh)
        return 9_000, None, (100, 200, 300, 400, 500)

    monkeypatch.setattr(capture, "profiled_call", cpu_only_trace)
    rec = SimpleNamespace(timing="cuda-events", take=lambda: {})
    out = measure.Measured()
    measure._traced_repeat(SimpleNamespace(device="cuda:0", recorder=rec), str(tmp_path), out)
    assert [n.split(" (")[0] for n in out.notices] == ["warning: a CUDA profiling tool is attached",
                                                       "warning: trace.json.gz holds no GPU kernels"]
    assert "--nvtx-only" in out.notices[0] and "CPU (launch) times" in out.notices[1]
    assert capsys.readouterr().err.count("warning:") == 2
    # the phase edges travel to the trace on its wall clock, spaced as measured, with the clock they came from
    marks = out.trace_meta["phase_marks_unix_ns"]
    assert [b - a for a, b in zip(marks, marks[1:], strict=False)] == [100] * 4
    assert out.trace_meta["phase_clock"] == "cuda-events" and out.trace_meta["profiled_ttft_ns"] == 9_000
    assert out.trace_meta["device"] == "cuda:0"  # so `analyze` of this trace knows it is a GPU run


def test_a_trace_with_kernels_has_no_notice_and_a_cpu_trace_is_not_judged(tmp_path):
    raw = tmp_path / "raw.json"
    raw.write_text('{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "gemm"}]}')
    assert capture.device_event_count(str(raw)) == 1
    assert capture.empty_device_notice("cuda:0", str(raw), environ={}) is None
    raw.write_text('{"traceEvents": []}')
    assert capture.empty_device_notice("cpu", str(raw), environ={}) is None
    assert "CUPTI recorded no device activity" in capture.empty_device_notice("cuda:0", str(raw), environ={})


# -- precision ------------------------------------------------------------------------------------
def test_tf32_is_recorded_and_an_fp32_gpu_run_says_so():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        p = device.precision_settings()
        assert (p["float32_matmul"], p["cuda_matmul_allow_tf32"], p["float32_matmul_precision"]) == ("tf32", True, "high")
        assert "tf32" in device.precision_notice(p, "float32", "cuda:0")
        assert device.precision_notice(p, "bfloat16", "cuda:0") is None
        assert device.precision_notice(p, "float32", "cpu") is None
        torch.set_float32_matmul_precision("highest")
        p = device.precision_settings()
        assert p["float32_matmul"] == "ieee" and device.precision_notice(p, "float32", "cuda:0") is None
    finally:
        torch.set_float32_matmul_precision(before)


# -- SDPA's math kernel ---------------------------------------------------------------------------
QWEN3_8B = {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "intermediate_size": 12288, "vocab_size": 151936, "num_hidden_layers": 36}


def test_float32_gqa_on_a_gpu_adds_the_math_kernels_n_squared_memory():
    n, b, heads, h, e = 4096, 1, 32, 128, 4
    gpu = build.estimate_bytes(QWEN3_8B, n, b, "float32", "sdpa", "cuda:0")
    cpu = build.estimate_bytes(QWEN3_8B, n, b, "float32", "sdpa", "cpu")  # the CPU's flash kernel takes GQA
    # K and V repeated to 32 heads, scores and softmax [1, 32, n, n], the [n, n] float mask
    assert gpu - cpu == 2 * b * n * heads * h * e + 2 * b * heads * n * n * e + n * n * e
    for dtype, attn, config in (("bfloat16", "sdpa", QWEN3_8B), ("float32", "flash_attention_2", QWEN3_8B),
                                ("float32", "sdpa", {**QWEN3_8B, "num_key_value_heads": 32}),
                                ("float32", "sdpa", {**QWEN3_8B, "head_dim": 512})):
        assert not build.sdpa_math_fallback(config, dtype, attn, "cuda:0")
        assert build.estimate_bytes(config, n, b, dtype, attn, "cuda:0") == build.estimate_bytes(
            config, n, b, dtype, attn, "cpu")
    notice = build.math_fallback_notice(QWEN3_8B, "float32", "sdpa", "cuda:0")
    assert "32 query heads, 8 KV heads" in notice and "math kernel" in notice
    assert build.math_fallback_notice(QWEN3_8B, "bfloat16", "sdpa", "cuda:0") is None
    with pytest.raises(InputError, match="math kernel.*bfloat16"):
        build.check_fits(build.estimate_bytes(QWEN3_8B, 32768, 1, "float32", "sdpa", "cuda:0"), 140 * GIB, "cuda:0",
                         math_fallback=True)


# -- benchmarks/gpu_check.sh ----------------------------------------------------------------------
def test_gpu_check_dry_run_leaves_evidence_and_a_summary_of_every_figure(tmp_path, monkeypatch, capsys, qwen3_run):
    """The script's shell (arguments, steps.tsv, the python it writes, the summary) in a process of its
    own; its in-process step here, where torch is imported already; no GPU and a few seconds."""
    import runpy
    import shutil
    import subprocess
    from pathlib import Path

    from tests.conftest import cli

    root, out = Path(__file__).resolve().parents[1], tmp_path / "evidence"
    done = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out),
                           "--steps", "summary"], env={**os.environ, "PY": sys.executable},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "summary rc=0" in done.stdout and (out / "inprocess.py").is_file() and (out / "steps.tsv").is_file()
    # a CLI run folder with its trace analyzed, as the run_<len> and analyze_<len> steps leave it
    shutil.copytree(qwen3_run.path, out / "runs" / "n64")
    analyzed = cli("analyze", str(out / "runs" / "n64" / "trace.json.gz"), "--json")
    (out / "runs" / "n64" / "analyze.json").write_text(analyzed.stdout)
    for name, value in {"OUT": str(out), "DEV": "cpu", "MODEL": "tiny-qwen3", "INPROC_LENS": "16",
                        "INPROC_WARMUP": "0", "INPROC_REPEAT": "1"}.items():
        monkeypatch.setenv(name, value)
    runpy.run_path(str(out / "inprocess.py"), run_name="__main__")
    facts = json.loads((out / "inprocess.json").read_text())
    assert facts["n16"]["plain_ttft_p50_ms"] > 0 and facts["n16"]["tool_ranges_per_prefill"] > 0
    assert facts["precision"]["float32_matmul"] in ("ieee", "tf32", "bf16")
    capsys.readouterr()
    runpy.run_path(str(out / "summary.py"), run_name="__main__")
    text = capsys.readouterr().out
    for expected in ("n16: independent TTFT", "n16.tool_ttft_p50_ms_telemetry_None = ", "n64: TTFT p50",
                     "n64 precision", "kernels/ranges", "traced phases from host", "table components:"):
        assert expected in text, expected
