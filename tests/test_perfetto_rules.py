"""Our `trace.json.gz` as Perfetto imports it: every slice nests, counters have clean names, no temp paths.

The rules below are Perfetto's JSON importer's (google/perfetto, src/trace_processor), checked
against its source, and its docs (docs/getting-started/other-formats.md): "Perfetto's data model
requires duration events (B/E pairs and X events) to nest, as mandated by the spec. Overlapping,
non-nested events are out of spec"; older importers drop such a slice, newer ones move it to an
overflow track. The checker emulates the importer rather than trusting our own exporter's code:

1. Timestamps. `ts` and `dur` are microseconds; the importer turns each into integer ns on its own
   (json_trace_tokenizer.cc `CoerceToTs`): an integer, or a double with an integral value, times
   1000; any other double `llround(value * 1000.0)`, after its own parser built the double as
   `double(integer part) + double(fraction digits) / double(10^digits)` (util/json_parser.h
   `StringToDouble`). Older releases (json_trace_utils.cc `CoerceToNs`) truncated instead,
   `int64(strtod(text) * 1000)`. A slice's end is `ts_ns + dur_ns`, so both are checked.
2. Order. Events are sorted by ts; at equal ts an `X` event with a longer dur comes first
   (sorter/trace_sorter.h `KeyForType`: max - dur); otherwise file order.
3. Nesting, per thread track (pid, tid; tid 0 means tid = pid): an open slice is closed when it
   ended before the new one starts, or at the same instant unless both are instants
   (slice_tracker.cc `MaybeCloseStack`); a new slice that starts inside an open one and ends after
   it (`new_ts < end && new_ts + new_dur > end`) is the violation: dropped or spilled.
4. Depth at most 512 (slice_tracker.h `kMaxDepth`); `dur` present and not negative.
5. Track ids are integers: a string pid or tid is interned as a string id, which the importer
   calls "brittle ... not a part of the actual spec".
6. Counters (`C`): a track per argument named `name + " " + key`; ours must be short words (no
   paths, no separators other than space, `_`, `.`, `-`) with numeric values.
7. No temporary path (the raw trace Kineto wrote, the folder it was in) in `traceName` or any
   other top-level field.
"""
from __future__ import annotations

import gzip
import itertools
import json
import math
import re
from pathlib import Path

import pytest

MAX_DEPTH = 512
CLEAN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,79}$")


class Num(str):
    """A JSON number with a fraction or exponent, kept as its text (the importer parses the text)."""


def _llround(value: float) -> int:
    """C's llround: to nearest, halves away from zero."""
    whole = math.floor(abs(value))
    near = whole + (1 if abs(value) - whole >= 0.5 else 0)
    return near if value >= 0 else -near


def _perfetto_double(text: str) -> float:
    """util/json_parser.h StringToDouble: integer part + fraction digits / 10^digits, then the exponent."""
    m = re.fullmatch(r"(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?", text)
    assert m, text
    sign, whole, digits, exponent = m.groups()
    value = float(int(whole)) + (float(int(digits)) / float(10 ** len(digits)) if digits else 0.0)
    if exponent:
        e = int(exponent)
        value = value / math.pow(10, -e) if e < 0 else value * math.pow(10, e)
    return -value if sign else value


def ns_current(value) -> int:
    """Perfetto's CoerceToTs today."""
    if isinstance(value, int):
        return value * 1000
    d = _perfetto_double(value)
    return int(d) * 1000 if d == math.trunc(d) else _llround(d * 1000.0)


def ns_legacy(value) -> int:
    """Perfetto's CoerceToNs before its own JSON parser: strtod, then truncation."""
    return value * 1000 if isinstance(value, int) else int(float(value) * 1000.0)


CONVERSIONS = {"current": ns_current, "legacy": ns_legacy}


def load_raw(path: Path) -> dict:
    """The trace with every fractional number kept as its text."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(raw, parse_float=Num)


def _number(value) -> bool:
    return isinstance(value, (int, Num)) and not isinstance(value, bool)


def _thread_key(event: dict) -> tuple:
    pid, tid = event.get("pid"), event.get("tid")
    return pid, (pid if tid == 0 and pid != 0 else tid)


def slice_problems(events: list[dict], convert) -> list[str]:
    """Rules 2 to 5 for the X events, with timestamps converted by `convert` (rule 1)."""
    problems, tracks = [], {}
    for index, e in enumerate(events):
        if e.get("ph") != "X":
            continue
        if not (_number(e.get("ts")) and _number(e.get("dur"))):
            problems.append(f"{e.get('name')!r}: ts or dur missing or not a number")
            continue
        if not (isinstance(e.get("pid"), int) and isinstance(e.get("tid"), int)):
            problems.append(f"{e.get('name')!r}: pid {e.get('pid')!r} / tid {e.get('tid')!r} not integers")
        ts, dur = convert(e["ts"]), convert(e["dur"])
        if dur < 0:
            problems.append(f"{e.get('name')!r}: negative dur")
            continue
        tracks.setdefault(_thread_key(e), []).append((ts, -dur, index, dur, e.get("name")))
    for key, track in tracks.items():
        stack: list[tuple[int, int, str]] = []  # (start, end, name)
        for ts, _neg, _index, dur, name in sorted(track):
            while stack and (stack[-1][1] < ts or (stack[-1][1] == ts and not (stack[-1][1] == stack[-1][0]
                                                                                and dur == 0))):
                stack.pop()
            if stack and ts < stack[-1][1] < ts + dur:
                problems.append(f"track {key}: {name!r} [{ts}, {ts + dur}] ns starts inside {stack[-1][2]!r} "
                                f"[{stack[-1][0]}, {stack[-1][1]}] and ends {ts + dur - stack[-1][1]} ns after it")
                continue
            if len(stack) >= MAX_DEPTH:
                problems.append(f"track {key}: {name!r} deeper than {MAX_DEPTH}")
                continue
            stack.append((ts, ts + dur, name))
    return problems


def counter_problems(events: list[dict]) -> list[str]:
    """Rule 6."""
    problems = []
    for e in events:
        if e.get("ph") != "C":
            continue
        args = e.get("args") or {}
        if not args or not isinstance(e.get("pid"), int) or not _number(e.get("ts")):
            problems.append(f"counter {e.get('name')!r}: no args, no integer pid, or no ts")
        for key, value in args.items():
            track = f"{e.get('name')} {key}"
            if not (CLEAN_NAME.match(str(e.get("name", ""))) and CLEAN_NAME.match(str(key))) or "/" in track:
                problems.append(f"counter track {track!r} is not a clean name")
            if not _number(value):
                problems.append(f"counter track {track!r}: value {value!r} is not a number")
    return problems


def metadata_problems(data: dict, forbidden: tuple[str, ...]) -> list[str]:
    """Rule 7: every top-level field but the events, searched for the forbidden strings."""
    text = json.dumps({k: v for k, v in data.items() if k != "traceEvents"})
    return [f"top-level metadata mentions {word!r}" for word in forbidden if word and word in text]


def perfetto_problems(path: Path, forbidden: tuple[str, ...] = ()) -> list[str]:
    """Everything Perfetto would drop, move or show wrongly in the trace at `path` (empty: clean)."""
    data = load_raw(path)
    events = data["traceEvents"]
    problems = [f"{name} import: {p}" for name, convert in CONVERSIONS.items()
                for p in slice_problems(events, convert)]
    return problems + counter_problems(events) + metadata_problems(data, forbidden)


# ---- the checker, on hand-made traces --------------------------------------------------------------

def _write(tmp_path: Path, events: list[dict], **top) -> Path:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": events, **top}))
    return path


def _x(name, ts, dur, tid=1):
    return {"ph": "X", "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur}


def test_the_checker_accepts_nesting_and_touching_siblings(tmp_path):
    events = [_x("parent", 10, 10), _x("a", 10, 5), _x("b", 15, 5), _x("instant", 20, 0), _x("other", 20, 1)]
    assert perfetto_problems(_write(tmp_path, events)) == []


def test_the_checker_finds_a_child_that_ends_after_its_parent(tmp_path):
    events = [_x("parent", 10, 10), _x("child", 15, 6)]
    problems = perfetto_problems(_write(tmp_path, events))
    assert len(problems) == 2 and all("'child'" in p and "ends 1000 ns after" in p for p in problems)


def test_the_checker_sees_one_nanosecond_of_float_rounding(tmp_path):
    # The child ends exactly where its parent does (11.001 us). 1.001 * 1000 is 1000.9999999999999 in
    # doubles, so a truncating importer ends the parent at 11,000 ns and the child 1 ns after it.
    path = tmp_path / "t.json"
    path.write_text('{"traceEvents": [{"ph": "X", "name": "parent", "pid": 1, "tid": 2, "ts": 10.0, "dur": 1.001},'
                    '{"ph": "X", "name": "child", "pid": 1, "tid": 2, "ts": 10.5, "dur": 0.501}]}')
    assert ns_legacy(Num("1.001")) == 1000 and ns_current(Num("1.001")) == 1001
    problems = perfetto_problems(path)
    assert len(problems) == 1 and problems[0].startswith("legacy import") and "ends 1 ns after" in problems[0]


def test_the_checker_reads_perfetto_numbers_as_perfetto_does():
    assert ns_current(5) == 5000 and ns_current(Num("5.0")) == 5000 and ns_current(Num("0.001")) == 1
    assert ns_current(Num("5185991146554.522")) == 5185991146554522
    assert ns_current(Num("1.5e-3")) == 2  # 1.5 ns: llround
    assert ns_legacy(Num("1.5e-3")) == 1  # truncated


def test_the_checker_wants_integer_tracks_clean_counters_and_no_paths(tmp_path):
    events = [{**_x("a", 1, 1), "tid": "1 overlap"},
              {"ph": "C", "name": "/tmp/x/nvml:0 gpu_util_pct", "pid": 3, "ts": 1, "args": {"gpu_util_pct": 5}}]
    problems = perfetto_problems(_write(tmp_path, events, traceName="/tmp/x/.trace.raw.json"), ("/tmp/x",))
    assert any("not integers" in p for p in problems)
    assert any("not a clean name" in p for p in problems)
    assert any("metadata mentions" in p for p in problems)


# ---- the exporter's pieces, judged by the checker -----------------------------------------------------

def test_every_written_microsecond_reads_back_as_its_nanosecond():
    from analyzers.trace.export import ns_to_us

    # every ns of the first 0.1 ms, then values spread over an hour (the range a rebased trace uses)
    for ns in list(range(0, 100_000)) + [3_600_000_000_000 // 7919 * k + k for k in range(7919)]:
        text = json.dumps(ns_to_us(ns))
        assert (ns_current(Num(text)), ns_legacy(Num(text))) == (ns, ns), text


def test_a_raw_trace_with_float_edges_and_string_ids_comes_out_clean(tmp_path):
    """Kineto-like input: months of microseconds, a `Spans` process with a string tid, our ranges, a
    genuine overlap, and the temporary path in traceName."""
    from analyzers.trace.export import finalize_trace

    t0 = 5_185_991_146_554_522  # ns since baseTimeNanoseconds: Kineto writes 5185991146554.522 (us)

    def us(ns: int) -> float:  # Kineto's text, 3 decimals of microseconds
        return float(f"{ns // 1000}.{ns % 1000:03d}")

    def x(name, start_ns, dur_ns, pid=9, tid=9):
        return {"ph": "X", "name": name, "pid": pid, "tid": tid, "ts": us(t0 + start_ns), "dur": us(dur_ns)}

    events = [x("ttft/h2d", 0, 30_255), x("ttft/embedding", 40_001, 10_003), x("ttft/sampling", 100_777, 4_350),
              x("ttft/d2h", 110_001, 1_001), x("straddles", 45_000, 20_000),
              x("PyTorch Profiler (0)", 0, 200_000, pid="Spans", tid="PyTorch Profiler")]
    raw = tmp_path / "tmpdir" / ".trace.raw.json"
    raw.parent.mkdir()
    raw.write_text(json.dumps({"traceEvents": events, "baseTimeNanoseconds": 1_790_857_026_000_000_000,
                               "traceName": str(raw)}))
    out = tmp_path / "trace.json.gz"
    result = finalize_trace(raw, out)
    assert result["moved_to_overlap_tracks"] == 1  # `straddles` ends after ttft/embedding
    assert perfetto_problems(out, forbidden=(str(raw.parent), ".trace.raw")) == []
    data = json.loads(gzip.decompress(out.read_bytes()))
    assert data["traceName"] == "trace.json.gz"
    got = {e["name"]: e for e in data["traceEvents"] if e.get("ph") == "X"}
    # absolute time kept: base + ts is what it was, to the nanosecond
    base = data["baseTimeNanoseconds"]
    assert base + round(got["ttft/h2d"]["ts"] * 1000) == 1_790_857_026_000_000_000 + 5_185_991_146_554_522
    # forward runs from h2d's end (t0 + 30.255) to sampling's start (t0 + 100.777): 70.522 us exactly
    forward = next(e for e in data["traceEvents"] if e.get("cat") == "ttft_phase" and e["name"] == "forward")
    assert round(forward["dur"] * 1000) == 70_522
    assert all(isinstance(e["pid"], int) and isinstance(e["tid"], int) for e in got.values())


# ---- our traces ------------------------------------------------------------------------------------

MODELS = ("tiny-qwen3", "tiny-llama", "tiny-qwen2", "tiny-mistral", "tiny-gemma", "tiny-phi3")
LENGTHS = (8, 16, 24, 32, 48, 64, 96, 128)
TRACES = 50


@pytest.fixture(scope="module")
def fifty_traces(tmp_path_factory, tiny_model):
    """50 traces written by `profile_prefill`, cycling through the tiny models and small lengths."""
    from profiler import profile_prefill

    cases = list(itertools.islice(itertools.cycle(itertools.product(MODELS, LENGTHS)), 0, TRACES * 7, 7))
    out = []
    for i, (name, n) in enumerate(cases):
        folder = tmp_path_factory.mktemp(f"perfetto{i}")
        # telemetry on for every other trace, so the counters get checked too
        profile_prefill(tiny_model(name), n, warmup=0, repeat=1, trace_dir=str(folder),
                        telemetry_interval_ms=5.0 if i % 2 else None)
        out.append((name, n, folder))
    return out


def test_fifty_traces_pass_every_rule(fifty_traces):
    assert len(fifty_traces) == TRACES and {m for m, _n, _f in fifty_traces} == set(MODELS)
    failures = {}
    for name, n, folder in fifty_traces:
        path = folder / "trace.json.gz"
        assert sorted(p.name for p in folder.iterdir()) == ["trace.json.gz"]  # the raw trace is gone
        problems = perfetto_problems(path, forbidden=(str(folder), ".trace.raw"))
        if problems:
            failures[f"{name} n={n}"] = problems[:3]
    assert not failures, failures


def test_our_tracks_and_counters_are_in_every_trace(fifty_traces):
    for i, (_name, _n, folder) in enumerate(fifty_traces):
        events = json.loads(gzip.decompress((folder / "trace.json.gz").read_bytes()))["traceEvents"]
        phases = [e["name"] for e in sorted((e for e in events if e.get("cat") == "ttft_phase"),
                                            key=lambda e: e["ts"])]
        assert phases == ["h2d", "forward", "sampling", "d2h"]
        counters = {e["name"] for e in events if e.get("ph") == "C"}
        assert bool(counters) == bool(i % 2)
