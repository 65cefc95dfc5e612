"""Property-based fuzzing of every reader of outside input: only the project's own error ever escapes.

The hand-written hostile cases (tests/test_hostile_traces.py, test_bad_run_files.py)
cover what we thought of; hypothesis covers what we did not. Each property
feeds a reader arbitrary JSON-ish documents, mutated valid documents and raw
bytes, and accepts either a result or an `InputError` (or a subclass): a
TypeError, KeyError, OverflowError or RecursionError escaping is a bug, since
the command line would print it as a traceback. The budget here is small and
derandomized (same examples every run, no .hypothesis folder); `benchmarks/fuzz.py`
runs the same properties for longer.
"""
from __future__ import annotations

import copy
import gzip
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from analyzers.cost.model_spec import ModelSpec
from analyzers.errors import InputError
from analyzers.run import SCHEMA, SCHEMA_VERSION, Run, load_run
from analyzers.sweep import check_summary, load_sweep
from analyzers.trace.load import frame_from_events, load_trace

_SCRATCH = tempfile.TemporaryDirectory(prefix="ttft-fuzz-")  # one file rewritten per example, removed at exit
# hypothesis caches what it learns (constants, unicode tables) under ./.hypothesis even with database=None:
# keep it out of the repository
set_hypothesis_home_dir(Path(_SCRATCH.name) / "hypothesis")

# benchmarks/fuzz.py raises the budget and lets hypothesis pick fresh examples (TTFT_FUZZ_RANDOM=1)
EXAMPLES = int(os.environ.get("TTFT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("TTFT_FUZZ_RANDOM"),
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# numbers a reader must survive: huge ints overflow float(), NaN and inf compare oddly
ODD_NUMBERS = st.sampled_from([10**400, -10**400, 2**63, 2**64 + 1, float("nan"), float("inf"), float("-inf"),
                               -1, 0, 1e308, -0.0])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | ODD_NUMBERS | st.text(max_size=12)
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


def _ev(name: str, cat: str, pid, tid, ts, dur, **args) -> dict:
    return {"ph": "X", "name": name, "cat": cat, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args}


VALID_TRACE = {"traceEvents": [
    _ev("ProfilerStep#1", "user_annotation", 1, 1, 0.0, 100.0),
    _ev("cudaLaunchKernel", "cuda_runtime", 1, 1, 10.0, 2.0, correlation=5),
    _ev("gemm", "kernel", 0, 7, 12.0, 30.0, correlation=5, stream=7, device=0),
    {"ph": "s", "name": "ac2g", "cat": "ac2g", "id": 5, "pid": 1, "tid": 1, "ts": 10.0},
    {"ph": "M", "name": "process_name", "pid": 0, "args": {"name": "GPU 0"}},
], "displayTimeUnit": "ms"}

VALID_RUN = {
    "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "model": "tiny-llama", "seq_len": 16, "batch": 1,
    "dtype": "float32", "device": "cpu", "device_name": "cpu", "attn": "sdpa", "warmup": 1, "repeat": 2,
    "ttft_ns": [1000, 1100], "cold_ttft_ns": 5000,
    "component_ns": [{"repeat": 0, "component": "mlp", "layer": 0, "detail": None, "ns": 40, "calls": 1}],
    "components_present": ["mlp"], "sampling": {"method": "greedy"}, "config": {"hidden_size": 256},
    "telemetry": {"attributed": [{"phase": "prefill", "value": None, "covered_ms": 1.0}]},
    "ceilings": None, "trace_file": None, "notices": ["x"],
}

VALID_SWEEP = {
    "lengths": [16, 32], "runs": ["n16", "n32"], "fit_rule": "r2 >= 0.99",
    "fits": [{"component": "mlp", "c0": 0.1, "c1": 0.01, "c2": 0.0, "r2": 0.999, "max_abs_residual_ms": 0.01}],
    "linear_ttft_drift": [{"seq_len": 32, "residual_pct": 1.0}],
    "crossover_searched_up_to": 65536, "crossover_attention_over_mlp": None, "crossover_refused_because": "",
    "extrapolated_ttft": [{"seq_len": 4096, "ms": None, "refused_because": "outside the fit"}],
    "extrapolated": [{"ms": 2.5}], "residuals": [],
}


def _valid_config() -> dict:
    from profiler.catalog import builtin_entry

    return dict(builtin_entry("tiny-llama")["config"])


@st.composite
def mutated(draw, valid: dict) -> dict:
    """`valid` with a few fields deleted or replaced, at the top or one level down in a row."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(doc) or ["x"]) | st.text(max_size=6))
        target = doc
        inner = doc.get(key)
        rows = [row for row in inner if isinstance(row, dict)] if isinstance(inner, list) else []
        if rows and draw(st.booleans()):
            target = draw(st.sampled_from(rows))
            key = draw(st.sampled_from(sorted(target) or ["x"]))
        elif isinstance(inner, dict) and inner and draw(st.booleans()):
            target, key = inner, draw(st.sampled_from(sorted(inner)))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(JSONISH)
    return doc


# (reader, "parsed" or "refused") -> examples: benchmarks/fuzz.py prints them
OUTCOMES: Counter = Counter()


def _only_input_errors(call, *args) -> None:
    """Call a reader; a result or an InputError is fine, anything else fails the property."""
    try:
        call(*args)
    except InputError:
        OUTCOMES[(call.__qualname__, "refused")] += 1
    else:
        OUTCOMES[(call.__qualname__, "parsed")] += 1




def _write(data: bytes, zipped: bool) -> Path:
    path = Path(_SCRATCH.name) / ("trace.json.gz" if zipped else "trace.json")
    path.write_bytes(gzip.compress(data) if zipped else data)
    return path


def _trace_bytes(doc) -> bytes:
    return json.dumps(doc).encode()


@FUZZ
@given(doc=st.one_of(JSONISH, mutated(VALID_TRACE), st.builds(
    lambda events: {"traceEvents": events},
    st.lists(st.one_of(mutated(VALID_TRACE["traceEvents"][2]), mutated(VALID_TRACE["traceEvents"][3]), JSONISH),
             max_size=6))), zipped=st.booleans())
def test_trace_loader_on_documents(doc, zipped) -> None:
    _only_input_errors(load_trace, _write(_trace_bytes(doc), zipped))
    if isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list):
        _only_input_errors(frame_from_events, doc["traceEvents"])


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), st.builds(
    lambda cut, junk: _trace_bytes(VALID_TRACE)[:cut] + junk, st.integers(0, 600), st.binary(max_size=8))),
    zipped=st.booleans())
def test_trace_loader_on_bytes(data, zipped) -> None:
    _only_input_errors(load_trace, _write(data, zipped))


@FUZZ
@given(doc=st.one_of(JSONISH, mutated(VALID_RUN)))
def test_run_reader(doc) -> None:
    _only_input_errors(Run.from_dict, doc)


@FUZZ
@given(doc=st.one_of(JSONISH, mutated(VALID_SWEEP)))
def test_sweep_checker(doc) -> None:
    _only_input_errors(check_summary, doc, Path("sweep.json"))


@FUZZ
@given(doc=st.one_of(JSONISH, st.dictionaries(st.text(max_size=8), JSONISH, max_size=6), mutated(_valid_config())))
def test_config_reader(doc) -> None:
    _only_input_errors(ModelSpec.from_config, doc)


def _config_folder(data: bytes) -> str:
    folder = Path(_SCRATCH.name) / "model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_bytes(data)
    return str(folder)


def _resolve_and_read(folder: str) -> None:
    from profiler.catalog import resolve

    ModelSpec.from_config(resolve(folder).config)


@FUZZ
@given(data=st.one_of(st.binary(max_size=100), st.builds(lambda d: json.dumps(d).encode(), JSONISH),
                      st.builds(lambda d: json.dumps(d).encode(), mutated(_valid_config()))))
def test_config_file_reader(data) -> None:
    _only_input_errors(_resolve_and_read, _config_folder(data))


def test_config_file_nested_too_deep_is_one_sentence() -> None:
    _only_input_errors(_resolve_and_read, _config_folder(b"[" * 200_000))


def test_config_with_a_number_beyond_float_range_is_one_sentence() -> None:
    _only_input_errors(ModelSpec.from_config, {**_valid_config(), "hidden_size": 10**400})


@pytest.mark.parametrize("doc", [
    {**VALID_RUN, "ttft_ns": [10**400]}, {**VALID_RUN, "seq_len": 10**400}, {**VALID_RUN, "ttft_ns": [[]]},
    {**VALID_RUN, "component_ns": [{**VALID_RUN["component_ns"][0], "ns": 10**400}]},
    {**VALID_RUN, "telemetry": {"attributed": [{"value": None, 1: 2}]}}, {**VALID_RUN, "schema_version": [1]},
])
def test_run_reader_known_hostile(doc) -> None:
    _only_input_errors(Run.from_dict, doc)


@pytest.mark.parametrize("junk", [
    {"ts": []}, {"ts": [1]}, {"dur": [[1]]}, {"id": [[]]}, {"args": {"correlation": [1, 2]}},
    {"ts": 10**400}, {"pid": {"a": 1}}, {"name": []}, {"args": "x"}, {"ts": "nan"},
])
def test_trace_event_with_a_list_or_object_where_a_number_belongs(junk) -> None:
    """Found by the fuzzer: 'ts': [] in every event made a 2-D column, and pandas raised ValueError."""
    events = [{**VALID_TRACE["traceEvents"][2], **junk}, {**VALID_TRACE["traceEvents"][3], **junk}]
    _only_input_errors(frame_from_events, events)
    _only_input_errors(load_trace, _write(_trace_bytes({"traceEvents": events}), zipped=False))


def _run_folder(data: bytes) -> str:
    folder = Path(_SCRATCH.name) / "run"
    folder.mkdir(exist_ok=True)
    (folder / "run.json").write_bytes(data)
    return str(folder)


def _sweep_folder(summary: bytes, table: bytes) -> str:
    folder = Path(_SCRATCH.name) / "sweep"
    folder.mkdir(exist_ok=True)
    (folder / "sweep.json").write_bytes(summary)
    (folder / "sweep.csv").write_bytes(table)
    return str(folder)


VALID_CSV = b"seq_len,component,ms\n16,mlp,0.5\n32,mlp,0.9\n"


@FUZZ
@given(data=st.one_of(st.binary(max_size=100), st.builds(lambda d: json.dumps(d).encode(), mutated(VALID_RUN))))
def test_run_file_reader(data) -> None:
    _only_input_errors(load_run, _run_folder(data))


@FUZZ
@given(summary=st.one_of(st.binary(max_size=60), st.builds(lambda d: json.dumps(d).encode(), mutated(VALID_SWEEP))),
       table=st.one_of(st.just(VALID_CSV), st.binary(max_size=60), st.builds(
           lambda cut, junk: VALID_CSV[:cut] + junk, st.integers(0, len(VALID_CSV)), st.binary(max_size=6))))
def test_sweep_folder_reader(summary, table) -> None:
    _only_input_errors(load_sweep, _sweep_folder(summary, table))


@pytest.mark.parametrize("reader", ["run", "sweep"])
def test_json_nested_too_deep_is_one_sentence(reader) -> None:
    deep = b"[" * 200_000
    with pytest.raises(InputError, match="deeper than Python can parse"):
        load_run(_run_folder(deep)) if reader == "run" else load_sweep(_sweep_folder(deep, VALID_CSV))


@pytest.mark.parametrize("valid", [VALID_RUN, VALID_SWEEP])
def test_the_valid_seeds_are_valid(valid) -> None:
    """Mutations of a document already refused would test only the first check."""
    if valid is VALID_RUN:
        assert Run.from_dict(valid).seq_len == 16
    else:
        assert check_summary(copy.deepcopy(valid), Path("sweep.json"))["lengths"] == [16, 32]


def test_the_valid_trace_and_config_seeds_are_valid() -> None:
    assert len(load_trace(_write(_trace_bytes(VALID_TRACE), zipped=True))) == 5
    assert ModelSpec.from_config(_valid_config()).hidden == 256
