"""Steps and phases: recorded vLLM, SGLang, Hugging Face and DDP traces, and hand-made ones.

Expected figures come from the raw JSON with plain loops (json, dicts, a correlation
dict), never from analyzers code, so a bug in the vectorised lookups cannot hide itself.
"""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

from analyzers.errors import InputError
from analyzers.trace.link import link
from analyzers.trace.load import load_trace
from analyzers.trace.steps import (
    DECODE,
    MIXED,
    NO_STEP,
    PREFILL,
    STEP_COLUMNS,
    STEP_TABLE_COLUMNS,
    TRAINING,
    UNKNOWN,
    device_rows_in,
    find_steps,
    step_name_phase,
    step_of_events,
    step_table,
)
from tests.conftest import SHARED_TRACES

DEVICE_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}
REL = 1e-9


@lru_cache(maxsize=None)
def _events(path: Path) -> tuple:
    with gzip.open(path, "rt") as fh:
        return tuple(json.load(fh)["traceEvents"])


def raw(name: str) -> tuple:
    path = SHARED_TRACES / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared external traces are not checked out next to the project")
    return _events(path)


def analysed(path: Path):
    frame = load_trace(path)
    linked = link(frame)
    steps = find_steps(frame)
    per_event = step_of_events(steps, frame, linked)
    return steps, per_event, linked, step_table(steps, per_event, linked)


def plain_launches(events) -> dict[int, dict]:
    """correlation -> launch call (runtime, else driver: cuLaunchKernel), the plain way."""
    found = {}
    for cat in ("cuda_runtime", "cuda_driver"):
        for e in events:
            if e.get("cat") == cat and "correlation" in e.get("args", {}):
                found.setdefault(e["args"]["correlation"], e)
    return found


def plain_device(events) -> list[dict]:
    return [e for e in events if e.get("ph") == "X" and e.get("cat") in DEVICE_CATS]


def launched_inside(events, start: float, end: float, pid=None) -> list[dict]:
    launches = plain_launches(events)
    out = []
    for e in plain_device(events):
        call = launches.get(e.get("args", {}).get("correlation"))
        if call is not None and start <= call["ts"] <= end and (pid is None or call["pid"] == pid):
            out.append(e)
    return out


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(("name", "phase"), [
    ("ProfilerStep#12", UNKNOWN),
    ("step[EXTEND bs=15 toks=15360]", PREFILL),
    ("step[DECODE bs=64 toks=64]", DECODE),
    ("step[MIXED bs=8 toks=2048]", MIXED),
    ("step[TARGET_VERIFY bs=4 toks=16]", UNKNOWN),  # speculative verify: not guessed
    ("execute_8192_context_9(sq8155sk8430sqsq1sqsk1)_generation_37(sq37sk34489sqsq37sqsk34489)", MIXED),
    ("execute_2048_context_1(sq2048sk2048sqsq1sqsk1)_generation_0(sq0sk0sqsq0sqsk0)", PREFILL),
    ("execute_64_context_0(sq0sk0sqsq0sqsk0)_generation_64(sq64sk9000sqsq64sqsk9000)", DECODE),
    ("vllm/v1/worker/gpu_model_runner.py(3380): execute_model", UNKNOWN),
    ("gpu_model_runner: forward", UNKNOWN),
])
def test_step_names_say_their_phase_or_nothing(name, phase):
    assert step_name_phase(name) == (phase, name if phase != UNKNOWN else "")


@pytest.mark.parametrize("name", ["ProfilerStep#1 extra", "aten::mm", "gpu_model_runner: sample", "my step[EXTEND]",
                                  "vllm::unified_attention_with_output", "Optimizer.step#SGD.step"])
def test_other_names_are_not_steps(name):
    assert step_name_phase(name) is None


# ------------------------------------------------------------------ recorded traces


def test_sglang_extend_step_is_one_prefill_step_with_all_its_kernels():
    events = raw("mi300x_sglang_qwen3-8b_extend.json.gz")
    steps, per_event, linked, table = analysed(SHARED_TRACES / "mi300x_sglang_qwen3-8b_extend.json.gz")
    assert list(steps.columns) == STEP_COLUMNS and list(table.columns) == STEP_TABLE_COLUMNS
    # SGLang's execute annotation wraps step[EXTEND ...] and nothing else: one iteration, one step.
    # Its extent is the outer range, so work launched around the inner one (positions, copies) counts.
    outer = next(e for e in events if e.get("cat") == "user_annotation" and e["name"].startswith("execute_"))
    inner = next(e for e in events if e.get("cat") == "user_annotation" and e["name"].startswith("step[EXTEND"))
    assert len(steps) == 1
    step = steps.iloc[0]
    assert (step["name"], step["phase"], step["evidence"]) == (inner["name"], PREFILL, inner["name"])
    assert (step["start_us"], step["end_us"]) == (outer["ts"], outer["ts"] + outer["dur"])
    mine = launched_inside(events, outer["ts"], outer["ts"] + outer["dur"])
    assert len(launched_inside(events, inner["ts"], inner["ts"] + inner["dur"])) < len(mine)  # 524 < 534
    assert (per_event == 0).sum() == len(mine) == table.loc[0, "kernels"]
    assert table.loc[0, "kernel_ms"] == pytest.approx(sum(e["dur"] for e in mine) / 1e3, rel=REL)
    ends = [e["ts"] + e["dur"] for e in mine]
    assert table.loc[0, "window_ms"] == pytest.approx((max(ends) - min(e["ts"] for e in mine)) / 1e3, rel=REL)
    assert len(device_rows_in(steps, per_event)) == len(mine)


def test_vllm_mixed_step_and_its_graph_replays():
    events = raw("mi300x_vllm_gpt-oss_mixed_step.json.gz")
    steps, per_event, linked, table = analysed(SHARED_TRACES / "mi300x_vllm_gpt-oss_mixed_step.json.gz")
    # The annotation counts 9 requests in context (8155 query tokens: prefill chunks, sk 8430 > sq
    # so some continue an earlier chunk) and 37 in generation (37 tokens: one decode token each),
    # 8155 + 37 = 8192 tokens in one forward: chunked prefill mixed with decodes, which is `mixed`.
    note = next(e for e in events if e.get("cat") == "user_annotation")
    assert "_context_9(" in note["name"] and "_generation_37(" in note["name"]
    assert len(steps) == 1  # the annotation and vLLM's execute_model frame inside it: one step
    assert (steps.loc[0, "phase"], steps.loc[0, "evidence"], steps.loc[0, "name"]) == (MIXED, note["name"], note["name"])
    assert len(steps.loc[0, "ranges"]) == 2
    launches = plain_launches(events)
    replayed = [e for e in plain_device(events)
                if launches.get(e["args"].get("correlation"), {}).get("name") == "hipGraphLaunch"]
    assert len(replayed) == 361  # 25 piecewise graph replays
    graph_rows = linked.device.index[linked.device["launch"].notna()
                                     & linked.device["correlation"].isin([e["args"]["correlation"] for e in replayed])]
    assert len(graph_rows) == len(replayed) and (per_event[graph_rows] == 0).all()
    assert table.loc[0, "kernels"] == len(launched_inside(events, note["ts"], note["ts"] + note["dur"]))
    assert device_rows_in(steps, per_event, phases=(PREFILL,)).empty  # mixed is not prefill
    assert len(device_rows_in(steps, per_event, phases=(MIXED,))) == len(plain_device(events))


def test_hf_profiler_step_holds_the_prefill_forward_but_says_unknown():
    events = raw("h100_hf_qwen1.5-0.5b_prefill.json.gz")
    steps, per_event, linked, table = analysed(SHARED_TRACES / "h100_hf_qwen1.5-0.5b_prefill.json.gz")
    # ProfilerStep#6 holds one forward over 16 x 2048 tokens, a prefill by what the recorder did; but
    # nothing in the trace's names says so (no generate, no phase annotation; shapes are not read),
    # and a decode iteration under ProfilerStep looks the same, so the phase is `unknown`, not a guess.
    step = next(e for e in events if e.get("cat") == "user_annotation" and e["name"] == "ProfilerStep#6")
    assert list(steps["name"]) == ["ProfilerStep#6"]
    assert (steps.loc[0, "phase"], steps.loc[0, "evidence"]) == (UNKNOWN, "")
    mine = launched_inside(events, step["ts"], step["ts"] + step["dur"])
    # The other device events were launched before the profiler started (no launch in the trace) and
    # ran before this step's kernels: outside its GPU window, so no step claims them.
    first, last = min(e["ts"] for e in mine), max(e["ts"] + e["dur"] for e in mine)
    mine_ids = {id(e) for e in mine}
    others = [e for e in plain_device(events) if id(e) not in mine_ids]
    assert not [e for e in others if first <= e["ts"] <= last]
    assert table.loc[0, "kernels"] == len(mine) == 1198
    assert table.loc[1, "name"] == NO_STEP and pd.isna(table.loc[1, "step"]) and table.loc[1, "kernels"] == len(others)
    assert table["share"].sum() == pytest.approx(1.0)
    assert table.loc[0, "share"] == pytest.approx(sum(e["dur"] for e in mine) / sum(e["dur"] for e in plain_device(events)))


def test_ddp_profiler_steps_are_training_and_claim_backward_kernels_of_the_autograd_thread():
    events = raw("v100_ddp_rank0.json.gz")
    steps, per_event, linked, table = analysed(SHARED_TRACES / "v100_ddp_rank0.json.gz")
    marks = sorted((e for e in events if e.get("cat") == "user_annotation" and e["name"].startswith("ProfilerStep#")),
                   key=lambda e: e["ts"])
    assert list(steps["name"]) == [e["name"] for e in marks]
    assert set(steps["phase"]) == {TRAINING}
    launches = plain_launches(events)
    for i, mark in enumerate(marks):
        inside = sorted((e for e in events if e.get("cat") == "user_annotation" and e["name"].startswith("Optimizer.")
                         and mark["ts"] <= e["ts"] <= mark["ts"] + mark["dur"]), key=lambda e: e["ts"])
        assert steps.loc[i, "evidence"] == inside[0]["name"]
        mine = launched_inside(events, mark["ts"], mark["ts"] + mark["dur"], pid=mark["pid"])
        # backward kernels are launched on autograd's thread, not the thread that marks the step
        assert {launches[e["args"]["correlation"]]["tid"] for e in mine} - {mark["tid"]}
        assert table.loc[i, "kernels"] == len(mine)
        assert table.loc[i, "kernel_ms"] == pytest.approx(sum(e["dur"] for e in mine) / 1e3, rel=REL)
    assert table["kernels"].sum() == len(plain_device(events))


# ------------------------------------------------------------------ hand-made traces


def _x(name, cat, ts, dur, tid=1, **args):
    return {"ph": "X", "name": name, "cat": cat, "pid": 1, "tid": tid, "ts": ts, "dur": dur, "args": args}


def _write(tmp_path: Path, events: list[dict]) -> Path:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"schemaVersion": 1, "traceEvents": events}))
    return path


def test_two_profiler_steps_a_graph_launch_and_a_kernel_outside(tmp_path):
    events = [
        _x("ProfilerStep#1", "user_annotation", 0, 100),
        _x("cudaLaunchKernel", "cuda_runtime", 10, 2, correlation=1),
        _x("k_first", "kernel", 20, 5, tid=7, correlation=1),
        _x("cudaLaunchKernel", "cuda_runtime", 50, 2, tid=2, correlation=4),  # another thread, inside step 0's time
        _x("k_side", "kernel", 60, 5, tid=7, correlation=4),
        _x("ProfilerStep#2", "user_annotation", 101, 99),
        _x("cudaGraphLaunch", "cuda_runtime", 110, 3, correlation=2),
        _x("g_a", "kernel", 120, 4, tid=7, correlation=2),
        _x("g_b", "kernel", 130, 5, tid=7, correlation=2),
        _x("k_nolaunch", "kernel", 126, 1, tid=7, correlation=99),  # no launch, inside step 1's GPU window
        _x("cudaLaunchKernel", "cuda_runtime", 250, 2, correlation=3),  # after both steps
        _x("k_outside", "kernel", 260, 10, tid=7, correlation=3),
    ]
    steps, per_event, linked, table = analysed(_write(tmp_path, events))
    assert list(steps["name"]) == ["ProfilerStep#1", "ProfilerStep#2"] and list(steps["step"]) == [0, 1]
    assert list(steps["phase"]) == [UNKNOWN, UNKNOWN]
    by_name = dict(zip(linked.device["name"].astype(str), per_event, strict=True))
    assert {k: v for k, v in by_name.items() if not pd.isna(v)} == {"k_first": 0, "k_side": 0, "g_a": 1, "g_b": 1,
                                                                     "k_nolaunch": 1}
    assert pd.isna(by_name["k_outside"])
    assert list(table["kernels"]) == [2, 3, 1]
    assert list(table["kernel_ms"] * 1e3) == pytest.approx([10, 10, 10])
    assert list(table["window_ms"] * 1e3) == pytest.approx([45, 15, 10])
    assert list(table["share"]) == pytest.approx([1 / 3, 1 / 3, 1 / 3])


def test_nested_step_ranges_resolve_to_the_innermost_and_a_container_keeps_the_rest(tmp_path):
    events = [
        # one iteration: a ProfilerStep around one SGLang step
        _x("ProfilerStep#1", "user_annotation", 0, 100),
        _x("step[DECODE bs=4 toks=4]", "user_annotation", 10, 50),
        _x("cudaLaunchKernel", "cuda_runtime", 5, 1, correlation=1),  # in the ProfilerStep, before the decode
        _x("k_prep", "kernel", 6, 1, tid=7, correlation=1),
        _x("cudaLaunchKernel", "cuda_runtime", 20, 1, correlation=2),
        _x("k_decode", "kernel", 21, 1, tid=7, correlation=2),
        # a ProfilerStep around two SGLang steps: those are the steps, the ProfilerStep keeps what is between
        _x("ProfilerStep#2", "user_annotation", 200, 100),
        _x("step[EXTEND bs=1 toks=512]", "user_annotation", 210, 30),
        _x("step[DECODE bs=1 toks=1]", "user_annotation", 260, 30),
        _x("cudaLaunchKernel", "cuda_runtime", 220, 1, correlation=3),
        _x("k_extend", "kernel", 221, 1, tid=7, correlation=3),
        _x("cudaLaunchKernel", "cuda_runtime", 250, 1, correlation=4),
        _x("k_between", "kernel", 251, 1, tid=7, correlation=4),
        _x("cudaLaunchKernel", "cuda_runtime", 270, 1, correlation=5),
        _x("k_decode2", "kernel", 271, 1, tid=7, correlation=5),
    ]
    steps, per_event, linked, table = analysed(_write(tmp_path, events))
    assert list(steps["name"]) == ["step[DECODE bs=4 toks=4]", "ProfilerStep#2", "step[EXTEND bs=1 toks=512]",
                                   "step[DECODE bs=1 toks=1]"]
    assert list(steps["phase"]) == [DECODE, UNKNOWN, PREFILL, DECODE]
    assert list(steps["start_us"]) == [0, 200, 210, 260]  # the first step has the ProfilerStep's extent
    by_name = dict(zip(linked.device["name"].astype(str), per_event, strict=True))
    assert by_name == {"k_prep": 0, "k_decode": 0, "k_extend": 2, "k_between": 1, "k_decode2": 3}
    rows = device_rows_in(steps, per_event, phases=(PREFILL, DECODE))
    assert sorted(linked.device.loc[rows, "name"].astype(str)) == ["k_decode", "k_decode2", "k_extend", "k_prep"]


def test_steps_of_another_trace_are_refused(tmp_path):
    one = load_trace(_write(tmp_path, [_x(f"ProfilerStep#{i}", "user_annotation", 10 * i, 5) for i in range(3)]))
    other = load_trace(_write(tmp_path, [_x("ProfilerStep#1", "user_annotation", 0, 10),
                                         _x("k", "kernel", 2, 3, tid=7, correlation=1)]))
    with pytest.raises(InputError, match="same frame"):
        step_of_events(find_steps(one), other, link(other))


def test_a_trace_without_steps(tmp_path):
    events = [_x("cudaLaunchKernel", "cuda_runtime", 0, 1, correlation=1), _x("k", "kernel", 2, 3, tid=7, correlation=1)]
    steps, per_event, linked, table = analysed(_write(tmp_path, events))
    assert steps.empty and list(steps.columns) == STEP_COLUMNS
    assert per_event.isna().all() and len(per_event) == 1
    assert list(table["name"]) == [NO_STEP] and table.loc[0, "share"] == pytest.approx(1.0)
    assert device_rows_in(steps, per_event).empty
