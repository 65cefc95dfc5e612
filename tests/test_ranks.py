"""Per-rank trace folders: ranks from names and distributedInfo, and the rank table.

The rank folder is made here from the recorded V100 DDP rank-0 trace, written twice:
that run had world size 1, so no collective kernel ran; both copies get 50 NCCL
all-reduce kernels added on a stream of their own (no launch call, so they are
classed by their name alone), so there is communication time to count. One copy
is as recorded, the other has every device event stretched twice as long around
the first one, so the lag and the shares are known by construction; the figures
themselves are counted from the raw JSON with plain loops.
"""
from __future__ import annotations

import gzip
import json
import shutil
from functools import lru_cache

import pytest

from analyzers.errors import InputError
from analyzers.trace.ranks import RANK_COLUMNS, analyze_ranks, rank_files, trace_rank
from tests.conftest import SHARED_TRACES

DDP = "v100_ddp_rank0.json.gz"
DEVICE_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}
STRETCH = 2.0
COLLECTIVE = "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*, unsigned long, ncclWork*)"
COLLECTIVES = 50


@lru_cache(maxsize=1)
def _ddp_doc() -> str:
    with gzip.open(SHARED_TRACES / DDP, "rt") as fh:
        return fh.read()


def ddp_doc() -> dict:
    if not (SHARED_TRACES / DDP).exists():
        pytest.skip(f"{SHARED_TRACES / DDP} is absent: the shared external traces are not checked out next to the project")
    doc = json.loads(_ddp_doc())  # a fresh copy each time: tests edit it
    t0 = min(e["ts"] for e in doc["traceEvents"] if e.get("ph") == "X" and e.get("cat") in DEVICE_CATS)
    doc["traceEvents"] += [{"ph": "X", "cat": "kernel", "name": COLLECTIVE, "pid": 0, "tid": "stream 99",
                            "ts": t0 + 1000.0 * i, "dur": 250.0 + i, "args": {"device": 0, "stream": 99}}
                           for i in range(COLLECTIVES)]
    return doc


def stretched(doc: dict) -> dict:
    """Every device event twice as long, and twice as far from the first one: a rank twice as slow."""
    device = [e for e in doc["traceEvents"] if e.get("ph") == "X" and e.get("cat") in DEVICE_CATS]
    t0 = min(e["ts"] for e in device)
    for e in device:
        e["ts"] = t0 + STRETCH * (e["ts"] - t0)
        e["dur"] = STRETCH * e["dur"]
    return doc


def plain_figures(doc: dict) -> dict:
    device = [e for e in doc["traceEvents"] if e.get("ph") == "X" and e.get("cat") in DEVICE_CATS]
    comm = [e for e in device if "nccl" in e["name"].lower()]
    return {"kernels": len(device), "device_ms": sum(e["dur"] for e in device) / 1e3,
            "communication_ms": sum(e["dur"] for e in comm) / 1e3,
            "step_ms": (max(e["ts"] + e["dur"] for e in device) - min(e["ts"] for e in device)) / 1e3}


def test_two_ranks_one_twice_as_slow(tmp_path):
    doc = ddp_doc()
    fast = plain_figures(doc)
    slow_doc = stretched(ddp_doc())
    slow = plain_figures(slow_doc)
    with gzip.open(tmp_path / "rank0.json.gz", "wt", compresslevel=1) as fh:
        json.dump(doc, fh)
    (tmp_path / "trainer_rank1.json").write_text(json.dumps(slow_doc))
    (tmp_path / "run.json").write_text(json.dumps({"model": "not a trace"}))  # skipped, not an error
    table = analyze_ranks(tmp_path)
    assert list(table.columns) == RANK_COLUMNS
    assert list(table["rank"]) == [0, 1] and list(table["file"]) == ["rank0.json.gz", "trainer_rank1.json"]
    for i, want in enumerate((fast, slow)):
        assert table.loc[i, "kernels"] == want["kernels"]
        for column in ("device_ms", "communication_ms", "step_ms"):
            assert table.loc[i, column] == pytest.approx(want[column], rel=1e-9), column
        assert table.loc[i, "communication_share"] == pytest.approx(want["communication_ms"] / want["device_ms"], rel=1e-9)
    assert fast["communication_ms"] == pytest.approx(sum(250.0 + i for i in range(COLLECTIVES)) / 1e3)
    # by construction: rank 1 is twice as slow, lags by rank 0's whole step, and spends the same share communicating
    assert table.loc[1, "step_ms"] == pytest.approx(STRETCH * table.loc[0, "step_ms"], rel=1e-6)
    assert list(table["lag_ms"]) == pytest.approx([0.0, (STRETCH - 1) * fast["step_ms"]], rel=1e-6)
    assert table.loc[1, "communication_share"] == pytest.approx(table.loc[0, "communication_share"], rel=1e-9)
    assert list(table["slowest"]) == [False, True]


def test_analyze_is_called_once_per_rank_file(tmp_path):
    for name in ("a_rank2.json", "rank10.json"):
        (tmp_path / name).write_text(json.dumps({"traceEvents": []}))
    seen = []

    def analyze(path):
        from analyzers.trace.link import link
        from analyzers.trace.load import load_trace
        seen.append(path.name)
        return link(load_trace(path))

    table = analyze_ranks(tmp_path, analyze=analyze)
    assert seen == ["a_rank2.json", "rank10.json"] and list(table["rank"]) == [2, 10]
    assert list(table["kernels"]) == [0, 0] and list(table["lag_ms"]) == [0.0, 0.0]


def _trace(events=(), **top) -> str:
    return json.dumps({"schemaVersion": 1, **top, "traceEvents": list(events)})


def test_rank_from_distributed_info_when_the_name_has_none(tmp_path):
    (tmp_path / "host_11.1700000000.pt.trace.json").write_text(_trace(distributedInfo={"backend": "nccl", "rank": 3}))
    with gzip.open(tmp_path / "host_12.1700000000.pt.trace.json.gz", "wt") as fh:
        fh.write(_trace(distributedInfo={"rank": 1, "world_size": 4}))
    assert [(rank, path.name) for rank, path in rank_files(tmp_path)] == [
        (1, "host_12.1700000000.pt.trace.json.gz"), (3, "host_11.1700000000.pt.trace.json")]


def test_the_name_wins_over_distributed_info(tmp_path):
    # a copied trace keeps its distributedInfo; its new name is what the user meant
    path = tmp_path / "rank5.json"
    path.write_text(_trace(distributedInfo={"rank": 0}))
    assert trace_rank(path) == 5
    assert trace_rank(tmp_path / "not_yet_written_rank2.json") == 2  # the name alone: the file is not read


def test_distributed_info_after_a_long_event_list(tmp_path):
    """A re-serialised trace (events first, header fields last, over 1 MiB gzipped text) is read whole."""
    events = [{"ph": "X", "cat": "cpu_op", "name": f"op{i}", "pid": 1, "tid": 1, "ts": i, "dur": 1} for i in range(30000)]
    path = tmp_path / "trace.json.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"traceEvents": events, "distributedInfo": {"rank": 7}}))
    assert len(gzip.decompress(path.read_bytes())) > 1 << 20
    assert trace_rank(path) == 7


def test_a_real_header_is_read(tmp_path):
    if not (SHARED_TRACES / DDP).exists():
        pytest.skip(f"{SHARED_TRACES / DDP} is absent")
    shutil.copyfile(SHARED_TRACES / DDP, tmp_path / "worker.pt.trace.json.gz")
    assert rank_files(tmp_path) == [(0, tmp_path / "worker.pt.trace.json.gz")]


def _one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and message.count("; ") <= 1


@pytest.mark.parametrize(("files", "match"), [
    ({}, "holds no trace files"),
    ({"run.json": json.dumps({"model": "x"}), "notes.txt": "hi"}, "holds no trace files"),
    ({"rank0.json": _trace(), "copy_of_rank0.json.gz": _trace()}, "both claim rank 0"),
    ({"a.json": _trace(distributedInfo={"rank": 1}), "b.json": _trace(distributedInfo={"rank": 1})}, "both claim rank 1"),
    ({"worker.json": _trace()}, "names no rank and has no distributedInfo.rank"),
    ({"worker.json": _trace(distributedInfo={"rank": "zero"})}, "names no rank"),
])
def test_bad_folders_are_one_sentence(tmp_path, files, match):
    for name, text in files.items():
        if name.endswith(".gz"):
            with gzip.open(tmp_path / name, "wt") as fh:
                fh.write(text)
        else:
            (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=match) as caught:
        rank_files(tmp_path)
    assert _one_sentence(str(caught.value)), str(caught.value)


def test_not_a_folder_and_a_corrupt_file(tmp_path):
    with pytest.raises(InputError, match="is not a folder") as caught:
        rank_files(tmp_path / "nowhere")
    assert _one_sentence(str(caught.value))
    (tmp_path / "worker.json.gz").write_bytes(gzip.compress(_trace().encode())[:20])
    with pytest.raises(InputError, match="truncated or corrupt gzip") as caught:
        rank_files(tmp_path)
    assert _one_sentence(str(caught.value))
