"""The tensor-parallel view: a 2-rank TP folder made from a real run folder, its tables checked against
figures worked out here from the run.json files alone, its merged trace against the input traces."""
from __future__ import annotations

import gzip
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import cli
from tests.test_perfetto_rules import perfetto_problems

COMM_NS = {0: 3_000_000, 1: 1_000_000}  # rank 0 waits longer in collectives: rank 1 is slower
SLOWER = 1.5  # rank 1's compute, times rank 0's
OFFSETS = {0: 0, 1: -1_234_567}
REMAINDER = "other"  # the fixture runs on the host clock


def _edit_rank(run_json: Path, rank: int) -> None:
    """Scale the rank's times and add its collectives: rows and TTFT move together, so the
    breakdown (remainder included) still sums to the TTFT."""
    data = json.loads(run_json.read_text())
    scale = SLOWER if rank else 1.0
    data["component_ns"] = [{**row, "ns": int(row["ns"] * scale)} for row in data["component_ns"]]
    data["component_ns"] += [{"repeat": i, "component": "communication", "layer": None, "detail": "all_reduce",
                              "ns": COMM_NS[rank], "calls": 8} for i in range(len(data["ttft_ns"]))]
    data["ttft_ns"] = [int(t * scale) + COMM_NS[rank] for t in data["ttft_ns"]]
    data["cold_ttft_ns"] = int(data["cold_ttft_ns"] * scale) + COMM_NS[rank]
    data["components_present"] = sorted({*data["components_present"], "communication"})
    run_json.write_text(json.dumps(data))


def _tp_json(folder: Path, **changes) -> None:
    data = {"schema": 1, "kind": "tp", "tp": 2, "ranks": [0, 1],
            "clock_offsets_ns": {str(r): v for r, v in OFFSETS.items()}, "logits_max_abs_diff": 2.5e-6,
            "backend": "gloo", "hosts": {"0": "node-a", "1": "node-a"}}
    (folder / "tp.json").write_text(json.dumps({**data, **changes}))


@pytest.fixture(scope="module")
def tp_folder(qwen3_run, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tp") / "tp"
    for rank in (0, 1):
        shutil.copytree(qwen3_run.path, folder / f"rank{rank}")
        _edit_rank(folder / f"rank{rank}" / "run.json", rank)
    _tp_json(folder)
    return folder


def _copy(tp_folder: Path, tmp_path: Path) -> Path:
    shutil.copytree(tp_folder, tmp_path / "tp")
    return tmp_path / "tp"


# ---- hand figures, from the run.json files alone ---------------------------------------------------

def _hand(folder: Path) -> dict:
    """Per rank: component -> ms in its median repeat (one repeat here), TTFT, communication, compute."""
    ranks = {}
    for rank in (0, 1):
        data = json.loads((folder / f"rank{rank}" / "run.json").read_text())
        assert len(data["ttft_ns"]) == 1  # the median repeat is repeat 0
        ns = Counter()
        for row in data["component_ns"]:
            ns[row["component"]] += row["ns"]
        ns[REMAINDER] += data["ttft_ns"][0] - sum(row["ns"] for row in data["component_ns"])
        ttft = data["ttft_ns"][0] / 1e6
        ranks[rank] = {"ms": {c: v / 1e6 for c, v in ns.items()}, "ttft": ttft,
                       "comm": ns["communication"] / 1e6, "compute": ttft - ns["communication"] / 1e6}
    return ranks


def test_tables_match_figures_worked_out_from_the_run_files(tp_folder):
    hand = _hand(tp_folder)
    result = cli("analyze", str(tp_folder), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    components = {row["component"]: row for row in out["components"]}
    for comp in set(hand[0]["ms"]) | set(hand[1]["ms"]):
        values = [hand[r]["ms"].get(comp, 0.0) for r in (0, 1)]
        row = components[comp]
        assert row["mean_ms"] == pytest.approx(sum(values) / 2, abs=1e-9), comp
        assert row["slowest_ms"] == pytest.approx(max(values), abs=1e-9), comp
        assert row["slowest_rank"] == values.index(max(values)), comp
        assert row["share"] == pytest.approx(sum(values) / 2 / hand[0]["ttft"], abs=1e-12), comp
    assert components["mlp"]["slowest_rank"] == 1 and components["communication"]["slowest_rank"] == 0
    ranks = {row["rank"]: row for row in out["ranks"]}
    for rank in (0, 1):
        assert ranks[rank]["ttft_ms"] == pytest.approx(hand[rank]["ttft"], abs=1e-9)
        assert ranks[rank]["communication_ms"] == pytest.approx(hand[rank]["comm"], abs=1e-9)
        assert ranks[rank]["compute_ms"] == pytest.approx(hand[rank]["compute"], abs=1e-9)
        assert ranks[rank]["breakdown_ms"] == pytest.approx(hand[rank]["ttft"], abs=1e-9)  # sums to its TTFT
    assert [ranks[r]["slowest"] for r in (0, 1)] == [False, True]
    skew = hand[1]["compute"] - hand[0]["compute"]
    assert skew > 0
    assert out["skew"] == {"ms": pytest.approx(skew, abs=1e-9), "slowest_rank": 1, "fastest_rank": 0}
    assert out["ttft_ms"] == pytest.approx(hand[0]["ttft"], abs=1e-9)
    assert out["mean_ttft_ms"] == pytest.approx(sum(c["mean_ms"] for c in out["components"]), abs=1e-9)
    assert out["mean_ttft_ms"] == pytest.approx((hand[0]["ttft"] + hand[1]["ttft"]) / 2, abs=1e-9)
    assert out["mean_ttft_share"] == pytest.approx(sum(c["share"] for c in out["components"]), abs=1e-12)
    assert out["slowest_ttft_rank"] == 1
    assert out["clock_offsets_ns"] == {"0": 0, "1": -1_234_567} and out["backend"] == "gloo"


def test_each_rank_breakdown_sums_to_its_ttft(tp_folder):
    from analyzers.tp import load_tp, tp_tables

    tables = tp_tables(load_tp(tp_folder))
    for rank, table in tables.breakdowns.items():
        assert table["ms"].sum() == pytest.approx(tables.stats[rank]["p50_ms"], abs=1e-9)
    assert tables.components["mean_ms"].sum() == pytest.approx(tables.mean_ttft_ms, abs=1e-9)
    assert tables.ttft_ms == tables.stats[0]["p50_ms"]


def test_analyze_prints_the_table_the_ranks_and_the_skew(tp_folder):
    hand = _hand(tp_folder)
    result = cli("analyze", str(tp_folder))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("│communication") or "communication │" in line for line in lines), result.stdout
    skew = hand[1]["compute"] - hand[0]["compute"]
    said = [line for line in lines if line.startswith("rank skew ")]
    assert len(said) == 1 and said[0].endswith(" ms: rank 0 waits for rank 1 in collectives"), result.stdout
    shown = float(said[0].split()[2].replace(",", ""))  # printed to 4 significant digits
    assert shown == pytest.approx(skew, rel=1e-3, abs=1e-3)
    assert any(line.startswith("rank 1 on node-a: TTFT") and line.endswith("(most compute: the others wait for it)") for line in lines)


def test_the_view_fits_80_columns(tp_folder):
    from rich.console import Console

    from analyzers.render.tp import render_tp
    from analyzers.tp import load_tp, tp_tables

    buffer = io.StringIO()
    render_tp(tp_tables(load_tp(tp_folder)), Console(file=buffer, width=80, force_terminal=False))
    text = buffer.getvalue()
    assert "…" not in text
    # the folder lines hold a temporary path of any length; every other line fits
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith(("TP folder", "merged"))), text


def test_write_tp_file_writes_what_load_tp_reads(tmp_path, tp_folder):
    from analyzers.tp import load_tp, write_tp_file

    folder = _copy(tp_folder, tmp_path)
    write_tp_file(folder, 2, {0: 0, 1: 77}, "nccl", None, {0: "a", 1: "b"})
    tp_run = load_tp(folder / "tp.json")
    assert tp_run.clock_offsets_ns == {0: 0, 1: 77} and tp_run.backend == "nccl" and tp_run.hosts == {0: "a", 1: "b"}


# ---- bad TP folders: one sentence, exit 2 ---------------------------------------------------------

def _refused(folder: Path, *words: str) -> str:
    for args in ((), ("--json",)):
        result = cli("analyze", str(folder), *args)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout == ""
        message = result.stderr.strip()
        assert message.startswith("ttft-profile: error:") and message.endswith(".") and "\n" not in message
        assert all(word in message for word in words), message
    return message


def test_a_missing_rank_folder_is_one_sentence(tmp_path, tp_folder):
    folder = _copy(tp_folder, tmp_path)
    shutil.rmtree(folder / "rank1")
    _refused(folder, "rank1", "tp.json")


@pytest.mark.parametrize(("field", "value"), [("tp", "2"), ("ranks", [0]), ("clock_offsets_ns", {"0": 0}),
                                              ("clock_offsets_ns", {"0": 0, "1": 1.5}), ("backend", 3),
                                              ("logits_max_abs_diff", "small"), ("hosts", ["a"]), ("kind", "sweep")])
def test_a_field_of_the_wrong_type_is_one_sentence(tmp_path, tp_folder, field, value):
    folder = _copy(tp_folder, tmp_path)
    _tp_json(folder, **{field: value})
    _refused(folder, "tp.json", f"'{field}'")


def test_a_future_schema_is_one_sentence(tmp_path, tp_folder):
    folder = _copy(tp_folder, tmp_path)
    _tp_json(folder, schema=2)
    _refused(folder, "schema", "upgrade ttft-profile")


def test_junk_json_and_ranks_of_different_prefills_are_one_sentence(tmp_path, tp_folder):
    folder = _copy(tp_folder, tmp_path)
    (folder / "tp.json").write_text("{not json")
    _refused(folder, "tp.json")
    _tp_json(folder)
    run_json = folder / "rank1" / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "seq_len": 128}))
    _refused(folder, "rank1", "n=128")


# ---- the merged trace ------------------------------------------------------------------------------

def _events(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()))


def _signature(e: dict, base_ns: int, shift_ns: int = 0) -> tuple:
    """What an event is, its time as absolute ns on rank 0's clock."""
    ts = None if not isinstance(e.get("ts"), (int, float)) else base_ns + round(e["ts"] * 1000) + shift_ns
    dur = None if not isinstance(e.get("dur"), (int, float)) else round(e["dur"] * 1000)
    return e.get("ph"), e.get("name"), ts, dur, json.dumps(e.get("args"), sort_keys=True)


def test_the_merged_trace_holds_every_event_of_each_rank_once_on_rank_0s_clock(tp_folder, tmp_path):
    from analyzers.trace.merge import merge_rank_traces

    traces = {r: tp_folder / f"rank{r}" / "trace.json.gz" for r in (0, 1)}
    merged = merge_rank_traces(traces, OFFSETS, tmp_path / "trace.json.gz")
    assert merged.ranks == [0, 1] and merged.missing == [] and merged.path == tmp_path / "trace.json.gz"
    assert perfetto_problems(merged.path, forbidden=(str(tp_folder),)) == []
    out = _events(merged.path)
    processes = {e["pid"]: e["args"]["name"] for e in out["traceEvents"]
                 if e.get("ph") == "M" and e.get("name") == "process_name"}
    assert sorted(processes.values()) == ["rank 0", "rank 1"]
    assert {e["pid"] for e in out["traceEvents"]} == set(processes)
    pid_of = {name: pid for pid, name in processes.items()}
    for rank, path in traces.items():
        data = _events(path)
        expected = Counter(_signature(e, data["baseTimeNanoseconds"], OFFSETS[rank])
                           for e in data["traceEvents"] if e.get("ph") != "M")
        got = Counter(_signature(e, out["baseTimeNanoseconds"]) for e in out["traceEvents"]
                      if e.get("ph") != "M" and e["pid"] == pid_of[f"rank {rank}"])
        assert got == expected
        assert sum(expected.values()) > 100


def _raw(path: Path, base: int, events: list[dict]) -> Path:
    path.write_text(json.dumps({"traceEvents": events, "baseTimeNanoseconds": base}))
    return path


def _kineto_like(pid: int) -> list[dict]:
    """A launch, its kernel and the ac2g flow between them; a thread 1 in two processes."""
    return [{"ph": "X", "name": "cudaLaunchKernel", "pid": pid, "tid": 1, "ts": 10.5, "dur": 2.001},
            {"ph": "X", "name": "gemm", "pid": 0, "tid": 1, "ts": 13.25, "dur": 4.0},
            {"ph": "s", "id": 7, "cat": "ac2g", "name": "ac2g", "pid": pid, "tid": 1, "ts": 10.5},
            {"ph": "f", "id": 7, "bp": "e", "cat": "ac2g", "name": "ac2g", "pid": 0, "tid": 1, "ts": 13.25},
            {"ph": "M", "name": "process_name", "pid": 0, "tid": 0, "args": {"name": "GPU 0"}},
            {"ph": "M", "name": "thread_name", "pid": 0, "tid": 1, "args": {"name": "stream 1"}}]


def test_flows_stay_paired_within_a_rank_and_missing_ranks_are_named(tmp_path):
    from analyzers.trace.merge import merge_rank_traces

    traces = {0: _raw(tmp_path / "r0.json", 5_000_000_000, _kineto_like(100)),
              1: _raw(tmp_path / "r1.json", 5_000_000_000, _kineto_like(100)), 2: None,
              3: tmp_path / "absent.json.gz"}
    merged = merge_rank_traces(traces, {0: 0, 1: 2_000, 2: 0, 3: 0}, tmp_path / "trace.json.gz")
    assert merged.ranks == [0, 1] and merged.missing == [2, 3]
    assert perfetto_problems(merged.path) == []
    events = _events(merged.path)["traceEvents"]
    flows = {}
    for e in events:
        if e.get("ph") in ("s", "f"):
            flows.setdefault(e["id"], []).append((e["pid"], e["ph"], e["ts"]))
    assert len(flows) == 2 and all(sorted(ph for _p, ph, _t in v) == ["f", "s"] for v in flows.values())
    assert all(len({p for p, _ph, _t in v}) == 1 for v in flows.values())  # each flow inside one rank
    kernels = sorted((e["pid"], e["tid"], e["ts"]) for e in events if e.get("name") == "gemm")
    launches = {e["pid"]: e["tid"] for e in events if e.get("name") == "cudaLaunchKernel"}
    assert all(tid != launches[pid] for pid, tid, _ts in kernels)  # two old threads 1 of a rank: two tracks
    assert kernels[1][2] - kernels[0][2] == pytest.approx(2.0, abs=1e-9)  # rank 1 moved 2,000 ns
    names = {e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert "GPU 0: stream 1" in names


def test_no_trace_at_all_or_a_broken_one_is_one_sentence(tmp_path):
    from analyzers.errors import InputError
    from analyzers.trace.merge import merge_rank_traces

    with pytest.raises(InputError, match="no rank has a trace"):
        merge_rank_traces({0: None, 1: tmp_path / "nope.json"}, {0: 0, 1: 0}, tmp_path / "t.json.gz")
    broken = tmp_path / "broken.json"
    broken.write_text('{"traceEvents": [{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": "soon", "dur": 1}]}')
    with pytest.raises(InputError, match="not numbers of microseconds"):
        merge_rank_traces({0: broken}, {0: 0}, tmp_path / "t.json.gz")
    assert not (tmp_path / "t.json.gz").exists()
