"""Hostile and broken traces are data: each is one sentence and exit code 2 (or an accepted trace,
exit 0, where that is the decision), in bounded time and memory, never a hang or a traceback.

Every file is built small in tmp_path; the size limit is tested with small limits, never with
gigabytes. Also here: the fast decoder (msgspec) gives exactly the plain stdlib path's frame.
"""
from __future__ import annotations

import builtins
import gzip
import json
import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from analyzers.trace.decode import decode_frame
from analyzers.trace.load import DEFAULT_MAX_BYTES, TraceFormatError, frame_from_events, load_trace
from tests.conftest import SHARED_TRACES, cli

SHARED = sorted(SHARED_TRACES.glob("*.json.gz")) if SHARED_TRACES.is_dir() else []


def X(name: str, cat: str, pid: int, tid: int, ts, dur, **args) -> dict:
    return {"ph": "X", "name": name, "cat": cat, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args}


def launch(ts: float, corr: int, tid: int = 1) -> dict:
    return X("cudaLaunchKernel", "cuda_runtime", 1, tid, ts, 2, correlation=corr)


def kernel(ts: float, dur, corr: int, name: str = "k") -> dict:
    return X(name, "kernel", 0, 7, ts, dur, correlation=corr, stream=7, device=0)


def write(tmp_path: Path, doc, name: str = "trace.json") -> Path:
    path = tmp_path / name
    path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return path


def refused(path: Path, needle: str) -> str:
    """`analyze PATH` in-process: exit 2, one `ttft-profile: error:` line holding `needle`, no traceback."""
    result = cli("analyze", str(path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and not result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ttft-profile: error:"), result.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


def accepted(path: Path) -> dict:
    """`analyze PATH --json` in-process: exit 0; the parsed JSON."""
    result = cli("analyze", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ------------------------------------------------------------ the fast decoder is exact


@pytest.mark.skipif(not SHARED, reason=f"{SHARED_TRACES} is absent: the shared external traces are not checked out")
@pytest.mark.parametrize("path", SHARED, ids=lambda p: p.name)
def test_fast_decoder_gives_the_plain_frame_on_every_shared_trace(path: Path) -> None:
    data = gzip.decompress(path.read_bytes())
    fast = decode_frame(data)
    assert fast is not None  # a real trace takes the fast path
    plain = frame_from_events(json.loads(data)["traceEvents"])
    pd.testing.assert_frame_equal(fast, plain, check_exact=True)
    for column in ("name", "cat", "ph", "pid", "tid"):  # same categories in the same order, not only values
        assert list(fast[column].cat.categories) == list(plain[column].cat.categories)
    pd.testing.assert_frame_equal(load_trace(path), plain, check_exact=True)


IRREGULAR = {  # junk the fast path hands to the plain path, or reads identically itself
    "numeric string dur": [X("k", "kernel", 0, 7, 1, "12.5")],
    "null ts": [X("k", "kernel", 0, 7, None, 1)],
    "name that is a number": [X(7, "kernel", 0, 7, 1, 1)],
    "float pid": [X("k", "kernel", 0.0, 7, 1, 1)],
    "args that is a list": [{**X("k", "kernel", 0, 7, 1, 1), "args": [1]}],
    "hex flow id": [{"ph": "f", "cat": "ac2g", "name": "ac2g", "id": "0x1f", "pid": 0, "tid": 7, "ts": 1}],
    "string bytes (roctracer)": [X("hipMemcpyAsync", "cuda_runtime", 1, 1, 1, 1, bytes="13248")],
    "id past int64": [X("k", "kernel", 0, 7, 1, 1, correlation=2**70)],
    "event without ph": [{"name": "k", "ts": 1}],
    "phase the format does not define": [{**X("k", "kernel", 0, 7, 1, 1), "ph": "Z"}],
}


@pytest.mark.parametrize("events", IRREGULAR.values(), ids=IRREGULAR.keys())
def test_irregular_events_give_the_plain_frame(tmp_path: Path, events: list) -> None:
    path = write(tmp_path, {"traceEvents": events})
    pd.testing.assert_frame_equal(load_trace(path), frame_from_events(events), check_exact=True)


# ------------------------------------------------------------ size: gzip bombs and huge strings


def test_gzip_bomb_stops_at_the_limit(tmp_path: Path, monkeypatch) -> None:
    # 16 MiB of JSON in ~16 KiB of gzip; read with a 100 kB limit, so at most ~100 kB is ever held
    bomb = write(tmp_path, gzip.compress(b'{"traceEvents": [' + b" " * (16 << 20) + b"]}"), "bomb.json.gz")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(TraceFormatError, match="expands past 100,000 bytes"):
        load_trace(bomb, max_bytes=100_000)
    monkeypatch.setattr("analyzers.trace.load.DEFAULT_MAX_BYTES", 100_000)  # what --max-trace-mb sets
    line = refused(bomb, "expands past 100,000 bytes of JSON")
    assert "--max-trace-mb" in line  # names the option that raises it
    assert load_trace(bomb, max_bytes=32 << 20).empty  # under a larger limit it is a (empty) trace


def test_plain_json_over_the_limit_is_refused_by_its_size(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, {"traceEvents": [kernel(0, 1, 1, name="n" * 200_000)]})
    monkeypatch.setattr("analyzers.trace.load.DEFAULT_MAX_BYTES", 100_000)
    refused(path, "is over 100,000 bytes of JSON")


def test_a_huge_name_is_caught_by_the_limit_and_a_large_one_is_data(tmp_path: Path, monkeypatch) -> None:
    # Stands for a 500 MB name: the same code path, at a size a test can afford.
    huge = write(tmp_path, gzip.compress(json.dumps({"traceEvents": [kernel(0, 3, 1, name="n" * (2 << 20))]}).encode()),
                 "huge.json.gz")
    monkeypatch.setattr("analyzers.trace.load.DEFAULT_MAX_BYTES", 1 << 20)
    refused(huge, "expands past 1 MB of JSON")
    monkeypatch.undo()
    large = write(tmp_path, {"traceEvents": [launch(0, 1), kernel(5, 3, 1, name="n" * 300_000)]})
    report = accepted(large)
    assert report["kernels"] == 1 and report["tables"]["top kernels"][0]["name"] == "n" * 300_000
    result = cli("analyze", str(large))  # the terminal table shortens it
    assert result.returncode == 0 and len(result.stdout) < 20_000


def test_default_limit_is_two_gib() -> None:
    assert DEFAULT_MAX_BYTES == 2 * 2**30
    with pytest.raises(ValueError, match="max_bytes"):
        load_trace("unused.json", max_bytes=0)


def test_max_trace_mb_flag(tmp_path: Path) -> None:
    bomb = write(tmp_path, gzip.compress(b'{"traceEvents": [' + b" " * (3 << 20) + b"]}"), "bomb.json.gz")
    result = cli("analyze", str(bomb), "--max-trace-mb", "1")
    assert result.returncode == 2 and "expands past 1 MB of JSON" in result.stderr
    assert cli("analyze", str(bomb), "--max-trace-mb", "4").returncode == 0


# ------------------------------------------------------------ structure


@pytest.mark.parametrize("text", [b"[" * 100_000 + b"]" * 100_000,
                                  b'{"traceEvents": [{"ph": "X", "args": {"deep": ' + b"[" * 100_000
                                  + b"]" * 100_000 + b"}}]}"],
                         ids=["top level", "inside args (skipped by the fast path)"])
def test_deep_nesting_is_one_sentence(tmp_path: Path, text: bytes) -> None:
    refused(write(tmp_path, text), "nests JSON arrays or objects deeper than Python can parse")


@pytest.mark.parametrize("events", [{}, "events", None, 7], ids=["object", "string", "null", "number"])
def test_trace_events_that_is_not_a_list(tmp_path: Path, events) -> None:
    refused(write(tmp_path, {"traceEvents": events}), "has no 'traceEvents' list")


def test_corrupt_gzip_and_trailing_garbage(tmp_path: Path) -> None:
    good = gzip.compress(json.dumps({"traceEvents": [kernel(0, 1, 1)]}).encode())
    refused(write(tmp_path, good[:-12], "cut.json.gz"), "truncated or corrupt gzip")
    refused(write(tmp_path, good + b"garbage", "tail.json.gz"), "truncated or corrupt gzip")
    assert accepted(write(tmp_path, good + b"\0" * 512, "padded.json.gz"))["kernels"] == 1  # padding, as gzip allows
    text = json.dumps({"traceEvents": [kernel(0, 1, 1), kernel(2, 1, 2)]}).encode()
    members = gzip.compress(text[:40]) + gzip.compress(text[40:])  # `cat a.gz b.gz` is one stream
    assert accepted(write(tmp_path, members, "two.json.gz"))["kernels"] == 2


# ------------------------------------------------------------ times and durations


def test_negative_duration_is_corrupt(tmp_path: Path) -> None:
    line = refused(write(tmp_path, {"traceEvents": [launch(0, 1), kernel(5, -5, 1, name="bad_kernel")]}),
                   "has 'dur' -5")
    assert "traceEvents[1] ('bad_kernel')" in line


def test_infinite_duration_is_corrupt(tmp_path: Path) -> None:
    text = json.dumps({"traceEvents": [launch(0, 1), kernel(5, float("inf"), 1)]}).encode()  # Python writes Infinity
    refused(write(tmp_path, text), "has 'dur' inf")


def test_non_numeric_string_duration_names_the_event_and_field(tmp_path: Path) -> None:
    line = refused(write(tmp_path, {"traceEvents": [launch(0, 1), kernel(5, "12 us", 1, name="gemm")]}),
                   "traceEvents[1] ('gemm') has 'dur' '12 us', which is not a number")
    assert line.endswith(".")


def test_numeric_string_duration_is_its_number(tmp_path: Path) -> None:
    report = accepted(write(tmp_path, {"traceEvents": [launch(0, 1), kernel(5, "12.5", 1)]}))
    assert report["kernel_ms"] == pytest.approx(0.0125)


def test_unfinished_and_nan_durations_are_missing(tmp_path: Path) -> None:
    # -1: torch.profiler's mark for an event still open when profiling stopped; NaN: Python's json
    # writes it for float("nan"). Both mean "no duration", as null or an absent `dur` does.
    events = [X("ttft/attention/L0", "user_annotation", 1, 1, 0, -1), launch(1, 1), kernel(5, float("nan"), 1),
              launch(2, 2), kernel(9, 4, 2)]
    frame = load_trace(write(tmp_path, json.dumps({"traceEvents": events}).encode()))
    assert frame["dur_us"].isna().tolist() == [True, False, True, False, False]
    report = accepted(tmp_path / "trace.json")
    assert report["kernels"] == 2 and report["kernel_ms"] == pytest.approx(0.004)


# ------------------------------------------------------------ links


def test_kernels_without_launch_events_are_unlinked(tmp_path: Path) -> None:
    report = accepted(write(tmp_path, {"traceEvents": [kernel(0, 3, 1, name="a"), kernel(5, 4, 2, name="b")]}))
    assert (report["kernels"], report["linked_kernels"], report["unlinked_kernels"]) == (2, 0, 2)
    assert {row["name"] for row in report["unlinked"]} == {"a", "b"}


def test_duplicate_correlation_ids_first_launch_wins(tmp_path: Path) -> None:
    events = [X("ttft/attention/L0", "user_annotation", 1, 1, 0, 10), X("ttft/mlp/L0", "user_annotation", 1, 1, 20, 10),
              launch(5, 1), launch(25, 1),  # the same id twice, in two components: the first is attention's
              kernel(40, 3, 1)]
    report = accepted(write(tmp_path, {"traceEvents": events}))
    components = {row["component"]: row["ms"] for row in report["tables"]["components"]}
    assert components == {"attention": pytest.approx(0.003)}


# ------------------------------------------------------------ paths that are not readable files


def test_permission_denied(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, {"traceEvents": [kernel(0, 1, 1)]})
    path.chmod(0)
    real_open = builtins.open

    def deny(file, *args, **kwargs):  # root reads a mode-000 file anyway, so refuse as the OS would for a user
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    refused(path, "cannot be read: permission denied")


def test_a_folder_is_not_a_trace(tmp_path: Path) -> None:
    refused(tmp_path, str(tmp_path))  # analyze reads a folder as a run folder or a folder of traces: neither
    with pytest.raises(TraceFormatError, match="is a folder"):
        load_trace(tmp_path)


def _unblock(fifo: Path) -> None:
    """Should the loader ever open the pipe, a writer that comes and goes ends its read: the test
    then fails (the read finds no JSON) instead of hanging."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # ENXIO: nobody is reading, which is the expected case
        pass


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "trace.json"
    os.mkfifo(fifo)
    rescue = threading.Timer(10, _unblock, [fifo])
    rescue.start()
    try:
        refused(fifo, "is not a regular file")
    finally:
        rescue.cancel()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero on this system")
def test_a_device_is_refused() -> None:
    refused(Path("/dev/zero"), "is not a regular file")  # would never end
