"""Trace parsing and kernel attribution, checked against real recorded Kineto traces.

Every expected figure is worked out here from the raw JSON with plain Python
(json + gzip, dicts and loops), never with analyzers code, so that a bug in
the frame building or the vectorised linking cannot hide itself.
"""
from __future__ import annotations

import copy
import gzip
import json
from functools import lru_cache
from pathlib import Path

import pytest

from analyzers.errors import InputError
from analyzers.trace.link import LinkedTrace, link
from analyzers.trace.load import TraceFormatError, load_trace
from analyzers.trace.tables import by_annotation, components, kernel_classes, top_kernels, top_kernels_by_component

EXTERNAL = Path(__file__).parents[1].parent / "shared" / "external-traces"
DEVICE_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}
REL = 1e-9  # float sums in a different order


def linked_trace(path: Path) -> LinkedTrace:
    return link(load_trace(path))


# ------------------------------------------------------------ plain-Python reference


def raw_events(name: str) -> list[dict]:
    """The trace's events as plain dicts; shared between tests, so never edit them in place."""
    path = EXTERNAL / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared external traces are not checked out next to the project")
    return _read_events(path)


@lru_cache(maxsize=None)
def _read_events(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as fh:
        return json.load(fh)["traceEvents"]


def external(name: str) -> Path:
    raw_events(name)  # skips when absent
    return EXTERNAL / name


def write_trace(tmp_path: Path, events: list[dict], name: str = "trace.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"schemaVersion": 1, "traceEvents": events}))
    return path


def plain_device(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("ph") == "X" and e.get("cat") in DEVICE_CATS]


def plain_launch(events: list[dict]) -> dict[int, dict]:
    """correlation id -> runtime/driver call."""
    return {e["args"]["correlation"]: e for e in events
            if e.get("ph") == "X" and e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}


def plain_innermost(ranges: list[dict], launch: dict) -> dict | None:
    """Innermost range on the launch's thread with ts <= launch ts <= ts + dur."""
    inside = [r for r in ranges if r["pid"] == launch["pid"] and r["tid"] == launch["tid"]
              and r["ts"] <= launch["ts"] <= r["ts"] + r["dur"]]
    return max(inside, key=lambda r: (r["ts"], -r["dur"])) if inside else None


def plain_time_by_innermost(events: list[dict], ranges: list[dict], key) -> dict[str, tuple[float, int]]:
    """Device µs and count per key(innermost range); None key when outside all ranges."""
    launches = plain_launch(events)
    out: dict = {}
    for e in plain_device(events):
        launch = launches.get(e.get("args", {}).get("correlation"))
        k = "(unlinked)" if launch is None else key(plain_innermost(ranges, launch))
        us, n = out.get(k, (0.0, 0))
        out[k] = (us + e["dur"], n + 1)
    return out


def table(frame, key: str) -> dict[str, tuple[float, int]]:
    """Result table -> {key: (µs, count)}."""
    return {row[key]: (row["ms"] * 1e3, row["count"]) for _, row in frame.iterrows()}


def assert_tables_equal(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for k, (us, n) in expected.items():
        assert got[k][0] == pytest.approx(us, rel=REL, abs=1e-6), k
        assert got[k][1] == n, k


# Annotation -> ttft label: gives the real V100 trace our range grammar, nesting included
# (## forward ## > DistributedDataParallel.forward > nccl:broadcast).
RELABEL = {
    "## forward ##": "ttft/embedding",
    "DistributedDataParallel.forward": "ttft/attention/L0",
    "nccl:broadcast": "ttft/other/broadcast",
    "## backward ##": "ttft/mlp",
    "nccl:all_reduce": "ttft/other/all_reduce",
    "## optimizer ##": "ttft/sampling",
    "Optimizer.step#SGD.step": "ttft/lm_head",
}


def relabelled(events: list[dict]) -> list[dict]:
    out = []
    for e in events:
        if e.get("cat") == "user_annotation" and e.get("name") in RELABEL:
            e = {**e, "name": RELABEL[e["name"]]}
        out.append(e)
    return out


def component_of(label: str) -> str:
    return label.split("/")[1]


# ------------------------------------------------------------ V100 DDP trace


def test_v100_frame_counts_and_kernel_time() -> None:
    events = raw_events("v100_ddp_rank0.json.gz")
    frame = load_trace(external("v100_ddp_rank0.json.gz"))
    kernels = [e for e in events if e.get("cat") == "kernel"]
    assert len(frame) == len(events)
    assert len(kernels) == 4350  # as the external-traces README says
    assert (frame["cat"] == "kernel").sum() == len(kernels)
    dev = link(frame).device
    assert len(dev) == len(plain_device(events)) == 4350 + 1600 + 145
    kernel_us = sum(e["dur"] for e in kernels)
    assert dev.loc[dev["cat"] == "kernel", "dur_us"].sum() == pytest.approx(kernel_us, rel=REL)
    assert set(frame.columns) >= {"name", "cat", "ph", "pid", "tid", "ts_us", "dur_us", "correlation",
                                  "external_id", "stream", "device"}


def test_v100_every_device_event_finds_its_launch() -> None:
    events = raw_events("v100_ddp_rank0.json.gz")
    launches = plain_launch(events)
    expected_linked = sum(e["args"].get("correlation") in launches for e in plain_device(events))
    linked = linked_trace(external("v100_ddp_rank0.json.gz")).device
    assert expected_linked == len(plain_device(events))  # this trace links completely
    assert int(linked["linked"].sum()) == expected_linked
    assert len(linked) == len(plain_device(events))  # linked + unlinked = all, none dropped


def annotation_tables_agree(name: str):
    """by_annotation of a recorded trace against the same grouping done in plain Python from its JSON."""
    events = raw_events(name)
    annotations = [e for e in events if e.get("ph") == "X" and e.get("cat") == "user_annotation"]
    expected = plain_time_by_innermost(events, annotations, lambda r: "(no annotation)" if r is None else r["name"])
    got = by_annotation(linked_trace(external(name)))
    assert_tables_equal(table(got, "annotation"), expected)
    return events, annotations, expected, got


def test_v100_time_per_innermost_annotation_matches_plain_python() -> None:
    events, annotations, expected, got = annotation_tables_agree("v100_ddp_rank0.json.gz")
    assert "DistributedDataParallel.forward" in expected  # a real figure, not an empty table

    # Inclusive time under "## forward ##" (launch on the same thread inside [ts, ts + dur]) equals
    # the rows of the annotations that live inside it, since innermost attribution only splits it.
    launches = plain_launch(events)
    forwards = [r for r in annotations if r["name"] == "## forward ##"]
    inclusive = sum(e["dur"] for e in plain_device(events)
                    if any(r["pid"] == (la := launches[e["args"]["correlation"]])["pid"] and r["tid"] == la["tid"]
                           and r["ts"] <= la["ts"] <= r["ts"] + r["dur"] for r in forwards))
    inner = {"## forward ##", "DistributedDataParallel.forward", "nccl:broadcast"}
    rows = got[got["annotation"].isin(inner)]
    assert inclusive > 0
    assert rows["ms"].sum() * 1e3 == pytest.approx(inclusive, rel=REL)


def test_v100_kernel_classes_cover_all_device_time() -> None:
    events = raw_events("v100_ddp_rank0.json.gz")
    dev = plain_device(events)
    classes = kernel_classes(linked_trace(external("v100_ddp_rank0.json.gz")))
    assert classes["ms"].sum() * 1e3 == pytest.approx(sum(e["dur"] for e in dev), rel=REL)
    assert classes["count"].sum() == len(dev)
    assert classes["share"].sum() == pytest.approx(1.0)
    # memcpy/memset are memory by category; no kernel name here says memcpy/memset
    memory_us = sum(e["dur"] for e in dev if e["cat"] in ("gpu_memcpy", "gpu_memset"))
    row = classes.set_index("kernel_class").loc["memory"]
    assert row["ms"] * 1e3 == pytest.approx(memory_us, rel=REL)
    assert row["count"] == 1600 + 145


def test_v100_top_kernels_match_plain_sums() -> None:
    events = raw_events("v100_ddp_rank0.json.gz")
    per_name: dict[str, float] = {}
    for e in plain_device(events):
        per_name[e["name"]] = per_name.get(e["name"], 0.0) + e["dur"]
    best = sorted(per_name.items(), key=lambda kv: -kv[1])[:5]
    top = top_kernels(linked_trace(external("v100_ddp_rank0.json.gz")), 5)
    assert len(top) == 5
    assert list(top["name"]) == [name for name, _ in best]
    assert list(top["ms"] * 1e3) == pytest.approx([us for _, us in best], rel=REL)


def test_v100_without_ttft_ranges_everything_is_other() -> None:
    events = raw_events("v100_ddp_rank0.json.gz")
    result = components(linked_trace(external("v100_ddp_rank0.json.gz")))
    assert list(result["component"]) == ["other"]
    assert result["ms"].iloc[0] * 1e3 == pytest.approx(sum(e["dur"] for e in plain_device(events)), rel=REL)
    assert result["basis"].iloc[0] == "kernel"


def test_v100_relabelled_ttft_ranges_attribute_kernels(tmp_path: Path) -> None:
    events = relabelled(raw_events("v100_ddp_rank0.json.gz"))
    ranges = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("user_annotation", "cpu_op")
              and e["name"].startswith("ttft/")]
    expected = plain_time_by_innermost(events, ranges, lambda r: "other" if r is None else component_of(r["name"]))
    expected = {("unlinked" if k == "(unlinked)" else k): v for k, v in expected.items()}
    got = components(linked_trace(write_trace(tmp_path, events)))
    assert_tables_equal(table(got, "component"), expected)
    assert expected["attention"][1] > 0 and expected["lm_head"][1] > 0
    assert got["share"].sum() == pytest.approx(1.0)


def test_v100_relabelled_cpu_only_uses_self_time(tmp_path: Path) -> None:
    events = [e for e in relabelled(raw_events("v100_ddp_rank0.json.gz")) if e.get("cat") not in DEVICE_CATS]
    ranges = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("user_annotation", "cpu_op")
              and e["name"].startswith("ttft/")]
    expected: dict[str, tuple[float, int]] = {}
    for r in ranges:
        # direct children: ranges inside r on its thread whose innermost container is r
        def container(c: dict) -> dict | None:
            holders = [p for p in ranges if p is not c and p["pid"] == c["pid"] and p["tid"] == c["tid"]
                       and p["ts"] <= c["ts"] and c["ts"] + c["dur"] <= p["ts"] + p["dur"]]
            return max(holders, key=lambda p: (p["ts"], -p["dur"])) if holders else None
        children = [c for c in ranges if container(c) is r]
        us, n = expected.get(component_of(r["name"]), (0.0, 0))
        expected[component_of(r["name"])] = (us + r["dur"] - sum(c["dur"] for c in children), n + 1)
    got = components(linked_trace(write_trace(tmp_path, events)))
    assert set(got["basis"]) == {"cpu_self"}
    assert_tables_equal(table(got, "component"), expected)
    # nesting is real here: embedding (## forward ##) keeps far less than its span
    span = sum(r["dur"] for r in ranges if r["name"] == "ttft/embedding")
    assert expected["embedding"][0] < 0.1 * span


def test_v100_with_correlations_and_flows_dropped_is_all_unlinked(tmp_path: Path) -> None:
    events = []
    for e in raw_events("v100_ddp_rank0.json.gz"):
        if e.get("cat") == "ac2g":
            continue
        if "correlation" in e.get("args", {}):
            e = {**e, "args": {k: v for k, v in e["args"].items() if k != "correlation"}}
        events.append(e)
    trace = linked_trace(write_trace(tmp_path, events))
    linked = trace.device
    assert len(linked) == 6095 and not linked["linked"].any()
    result = components(trace)
    assert list(result["component"]) == ["unlinked"]
    assert result["ms"].iloc[0] * 1e3 == pytest.approx(sum(e["dur"] for e in plain_device(events)), rel=REL)


# ------------------------------------------------------------ A100 AlexNet trace


def test_a100_kernels_and_sync_events() -> None:
    events = raw_events("a100_alexnet.json.gz")
    frame = load_trace(external("a100_alexnet.json.gz"))
    kernels = [e for e in events if e.get("cat") == "kernel"]
    assert len(kernels) == 79  # as the external-traces README says
    dev = link(frame).device
    assert len(dev) == len(plain_device(events)) == 79 + 16 + 3
    assert "cuda_sync" not in set(dev["cat"].astype(str))  # the device waiting is not work
    assert dev["dur_us"].sum() == pytest.approx(sum(e["dur"] for e in plain_device(events)), rel=REL)
    assert set(dev["stream"].dropna()) == {e["args"]["stream"] for e in plain_device(events)}


def test_a100_named_ranges_match_plain_python() -> None:
    events, annotations, expected, got = annotation_tables_agree("a100_alexnet.json.gz")
    measure = "[param|pytorch.model.alex_net|0|0|0|measure|forward]"
    assert expected[measure][1] > 0

    # Everything below the model's own range: plain inclusive sum vs the nested rows.
    launches = plain_launch(events)
    (model,) = [r for r in annotations if r["name"] == "[param|pytorch.model.alex_net|0|0|0]"]
    inclusive = sum(e["dur"] for e in plain_device(events)
                    if model["ts"] <= launches[e["args"]["correlation"]]["ts"] <= model["ts"] + model["dur"])
    nested = got[~got["annotation"].isin(["[param|cuda]", "(no annotation)", "(unlinked)"])]
    assert inclusive > 0
    assert nested["ms"].sum() * 1e3 == pytest.approx(inclusive, rel=REL)


def test_a100_classes_sum_to_device_time_and_gzip_equals_plain(tmp_path: Path) -> None:
    events = raw_events("a100_alexnet.json.gz")
    packed = load_trace(external("a100_alexnet.json.gz"))
    plain = load_trace(write_trace(tmp_path, events))
    assert packed.astype(str).equals(plain.astype(str))
    classes = kernel_classes(link(packed))
    assert classes["ms"].sum() * 1e3 == pytest.approx(sum(e["dur"] for e in plain_device(events)), rel=REL)
    assert classes["count"].sum() == 98


# ------------------------------------------------------------ CPU-only trace


def test_cpu_only_trace_has_no_device_time() -> None:
    events = raw_events("cpu_only.json.gz")
    frame = load_trace(external("cpu_only.json.gz"))
    assert len(frame) == len(events)
    annotations = [e for e in events if e.get("cat") == "user_annotation"]
    assert (frame["cat"] == "user_annotation").sum() == len(annotations) == 11
    trace = link(frame)
    assert trace.device.empty
    assert components(trace).empty and kernel_classes(trace).empty and by_annotation(trace).empty


def test_cpu_only_relabelled_threads_do_not_nest_across(tmp_path: Path) -> None:
    # gloo:all_reduce runs on two threads at overlapping times; nothing nests across threads.
    events = raw_events("cpu_only.json.gz")
    names = {"gloo:all_reduce": "ttft/other/gloo", "ProfilerStep#551": "ttft/sampling"}
    events = [{**e, "name": names[e["name"]]} if e.get("name") in names else e for e in events]
    gloo = [e["dur"] for e in events if e.get("name") == "ttft/other/gloo"]
    step = [e["dur"] for e in events if e.get("name") == "ttft/sampling"]
    got = table(components(linked_trace(write_trace(tmp_path, events))), "component")
    assert_tables_equal(got, {"sampling": (sum(step), 1), "other": (sum(gloo), 10)})


# ------------------------------------------------------------ hand-built trace with ttft ranges


def X(name: str, cat: str, pid: int, tid: int, ts: float, dur: float, **args) -> dict:
    return {"ph": "X", "name": name, "cat": cat, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args}


def launch(ts: float, corr: int, tid: int = 1, name: str = "cudaLaunchKernel") -> list[dict]:
    return [X(name, "cuda_runtime", 1, tid, ts, 2, correlation=corr),
            {"ph": "s", "cat": "ac2g", "name": "ac2g", "id": corr, "pid": 1, "tid": tid, "ts": ts}]


def kernel(ts: float, dur: float, corr: int, cat: str = "kernel", name: str = "k") -> list[dict]:
    return [X(name, cat, 0, 7, ts, dur, correlation=corr, stream=7, device=0),
            {"ph": "f", "cat": "ac2g", "name": "ac2g", "id": corr, "pid": 0, "tid": 7, "ts": ts, "bp": "e"}]


def hand_trace() -> list[dict]:
    """Thread (1,1): h2d [40,60]; attention/L0 [100,200] holding rope/L0 [110,130]; mlp/L0 (a cpu_op) [210,260].
    Thread (1,2) has no ranges. A non-ttft ProfilerStep [0,1000] and a gpu_user_annotation span must not matter."""
    return [
        X("ProfilerStep#1", "user_annotation", 1, 1, 0, 1000),
        X("ttft/h2d", "user_annotation", 1, 1, 40, 20),
        X("ttft/attention/L0", "user_annotation", 1, 1, 100, 100),
        X("ttft/rope/L0", "user_annotation", 1, 1, 110, 20),
        X("ttft/mlp/L0", "cpu_op", 1, 1, 210, 50),
        X("ttft/attention/L0", "gpu_user_annotation", 0, 7, 100, 800),  # a span with gaps: ignored
        *launch(50, 7, name="cudaMemcpyAsync"),  # in h2d
        *launch(105, 1),  # in attention
        *launch(115, 2),  # in rope, nested in attention: innermost wins
        *launch(150, 3),  # in attention again
        *launch(220, 4),  # in mlp
        *launch(300, 5),  # outside every ttft range -> other
        *launch(120, 6, tid=2),  # inside rope's time, but another thread -> other
        *kernel(400, 2, 7, cat="gpu_memcpy", name="Memcpy HtoD (Pinned -> Device)"),
        *kernel(410, 7, 1, name="flash_fwd_kernel"),
        *kernel(420, 3, 2, name="rotary_embedding_kernel"),
        *kernel(430, 11, 3, name="flash_fwd_kernel"),
        *kernel(450, 13, 4, name="ampere_bf16_s16816gemm"),
        *kernel(470, 5, 5, name="vectorized_elementwise_kernel"),
        *kernel(480, 4, 6, name="vectorized_elementwise_kernel"),
        X("orphan_kernel", "kernel", 0, 7, 490, 17, correlation=99),  # no launch anywhere -> unlinked
    ]


# µs per component, worked out by hand from hand_trace():
# h2d 2 (memcpy), rope 3, attention 7 + 11 = 18, mlp 13, other 5 + 4 = 9, unlinked 17; total 62
HAND_EXPECTED = {"h2d": (2.0, 1), "rope": (3.0, 1), "attention": (18.0, 2), "mlp": (13.0, 1),
                 "other": (9.0, 2), "unlinked": (17.0, 1)}


def test_hand_trace_per_component(tmp_path: Path) -> None:
    got = components(linked_trace(write_trace(tmp_path, hand_trace())))
    assert list(got["component"]) == ["h2d", "rope", "attention", "mlp", "other", "unlinked"]  # forward order
    assert_tables_equal(table(got, "component"), HAND_EXPECTED)
    assert list(got["share"]) == pytest.approx([2 / 62, 3 / 62, 18 / 62, 13 / 62, 9 / 62, 17 / 62])


def test_hand_trace_links_and_annotations(tmp_path: Path) -> None:
    linked = linked_trace(write_trace(tmp_path, hand_trace())).device
    by_corr = {int(c): row for c, (_, row) in zip(linked["correlation"], linked.iterrows(), strict=True)}
    assert not by_corr[99]["linked"] and all(by_corr[c]["linked"] for c in (1, 2, 3, 4, 5, 6, 7))
    assert by_corr[2]["ttft_label"] == "ttft/rope/L0"
    assert by_corr[6]["ttft_label"] is None and by_corr[6]["annotation"] is None  # thread 2 has no ranges
    assert by_corr[5]["annotation"] == "ProfilerStep#1"  # outside ttft ranges, still in the step
    classes = table(kernel_classes(linked_trace(write_trace(tmp_path, hand_trace()))), "kernel_class")
    assert classes == {"memory": (2.0, 1), "attention": (18.0, 2), "rope": (3.0, 1), "gemm": (13.0, 1),
                       "elementwise": (9.0, 2), "other": (17.0, 1)}  # 5 + 4 elementwise; the 17 us orphan


def test_hand_trace_falls_back_to_flows_without_correlation(tmp_path: Path) -> None:
    events = copy.deepcopy(hand_trace())
    for e in events:
        if e.get("cat") in DEVICE_CATS:
            e["args"].pop("correlation", None)  # only the ac2g flows are left to link by
    got = components(linked_trace(write_trace(tmp_path, events)))
    assert_tables_equal(table(got, "component"), HAND_EXPECTED)


def test_hand_trace_without_links_is_all_unlinked(tmp_path: Path) -> None:
    events = [e for e in copy.deepcopy(hand_trace()) if e.get("cat") != "ac2g"]
    for e in events:
        e.get("args", {}).pop("correlation", None)
    got = components(linked_trace(write_trace(tmp_path, events)))
    assert_tables_equal(table(got, "component"), {"unlinked": (62.0, 8)})


def test_cpu_only_hand_trace_uses_self_time(tmp_path: Path) -> None:
    events = [
        X("ttft/attention/L0", "user_annotation", 1, 1, 0, 100),
        X("ttft/rope/L0", "user_annotation", 1, 1, 10, 20),  # nested in attention/L0
        X("ttft/rope/L0/cos_sin", "user_annotation", 1, 1, 12, 6),  # nested in rope: same component
        X("aten::mm", "cpu_op", 1, 1, 40, 40),  # not ours: stays in attention's self time
        X("ttft/attention/L1", "user_annotation", 1, 1, 200, 50),
        X("ttft/mlp/L0", "user_annotation", 1, 2, 20, 40),  # overlaps in time, other thread: no nesting
    ]
    got = components(linked_trace(write_trace(tmp_path, events)))
    # attention (100 - 20) + 50 = 130 over 2 ranges; rope (20 - 6) + 6 = 20 over 2; mlp 40
    assert_tables_equal(table(got, "component"), {"rope": (20.0, 2), "attention": (130.0, 2), "mlp": (40.0, 1)})
    assert set(got["basis"]) == {"cpu_self"}


# ------------------------------------------------------------ bad input


def _bad(tmp_path: Path, data: bytes, name: str = "trace.json") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(TraceFormatError) as info:
        load_trace(path)
    message = str(info.value)
    assert message.endswith(".") and ". " not in message.replace("e.g. ", "")  # one sentence
    return message


def test_bad_inputs_raise_one_sentence(tmp_path: Path) -> None:
    good = json.dumps({"traceEvents": [X("k", "kernel", 0, 7, 0, 1)]}).encode()
    assert issubclass(TraceFormatError, ValueError)
    assert issubclass(TraceFormatError, InputError)
    assert "not valid JSON" in _bad(tmp_path, b"hello, I am not a trace")
    assert "not valid JSON" in _bad(tmp_path, good[: len(good) // 2])  # truncated plain JSON
    assert "gzip" in _bad(tmp_path, gzip.compress(good)[:-12], "trace.json.gz")
    assert "empty" in _bad(tmp_path, b"")
    assert "empty" in _bad(tmp_path, gzip.compress(b""), "trace.json.gz")
    assert "traceEvents" in _bad(tmp_path, json.dumps({"schemaVersion": 1}).encode())
    assert "not a JSON object" in _bad(tmp_path, json.dumps({"traceEvents": [1, 2]}).encode())
    assert "does not exist" in str(pytest.raises(TraceFormatError, load_trace, tmp_path / "missing.json").value)


def test_chrome_array_format_and_empty_event_list(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    path.write_text(json.dumps([X("k", "kernel", 0, 7, 0, 4, correlation=1)]))
    assert linked_trace(path).device["dur_us"].tolist() == [4.0]
    assert load_trace(write_trace(tmp_path, [])).empty


def test_launch_at_a_range_boundary_belongs_to_the_range(tmp_path: Path) -> None:
    # Integer-µs traces (the A100 one) put a launch and its range start on the same tick.
    events = [
        X("ttft/attention/L0", "user_annotation", 1, 1, 100, 100),
        X("ttft/rope/L0", "user_annotation", 1, 1, 110, 20),
        *launch(110, 1),  # at rope's first tick: rope
        *launch(130, 2),  # at rope's last tick: still rope (ranges are closed intervals)
        *launch(131, 3),  # just after: back in attention
        *kernel(400, 1, 1), *kernel(410, 2, 2), *kernel(420, 4, 3),
    ]
    got = table(components(linked_trace(write_trace(tmp_path, events))), "component")
    assert_tables_equal(got, {"rope": (3.0, 2), "attention": (4.0, 1)})


def test_hand_trace_top_kernels_per_component(tmp_path: Path) -> None:
    got = top_kernels_by_component(linked_trace(write_trace(tmp_path, hand_trace())), n=3)
    rows = {(r.component, r.name): (r.ms * 1e3, r.count) for r in got.itertuples(index=False)}
    # attention: flash_fwd_kernel twice (7 + 11 us); other: two elementwise launches (5 + 4 us);
    # unlinked lists the orphan kernel by name (17 us)
    assert rows[("attention", "flash_fwd_kernel")] == (pytest.approx(18.0), 2)
    assert rows[("other", "vectorized_elementwise_kernel")] == (pytest.approx(9.0), 2)
    assert rows[("unlinked", "orphan_kernel")] == (pytest.approx(17.0), 1)
    assert list(dict.fromkeys(got["component"])) == ["h2d", "rope", "attention", "mlp", "other", "unlinked"]


# ------------------------------------------------------------ report: one link, every table


def test_analyze_trace_links_once_and_classifies_once(tmp_path: Path, monkeypatch) -> None:
    import analyzers.trace.link as link_module
    import analyzers.trace.report as report_module

    calls = {"link": 0, "classify": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(report_module, "link", counted("link", report_module.link))
    monkeypatch.setattr(link_module, "kernel_classes", counted("classify", link_module.kernel_classes))
    report = report_module.analyze_trace(write_trace(tmp_path, hand_trace()), top=10)
    assert calls == {"link": 1, "classify": 1}
    # the hand trace's ProfilerStep#1 is a step (issue 10): its table comes last
    assert list(report.tables) == ["components", "top kernels per component", "kernel classes", "top kernels",
                                   "by user annotation", "steps"]
    assert [(s["name"], s["phase"]) for s in report.steps][0] == ("ProfilerStep#1", "unknown")
    assert_tables_equal(table(report.tables["components"], "component"), HAND_EXPECTED)
    assert report.grouping == "ttft components" and report.device_events == 8
    assert report.device_ms == pytest.approx(0.062)
    with pytest.raises(AttributeError):
        report.grouping = "kernel classes"  # frozen: a report is a result, not a work area


def test_trace_json_keys_and_markup_escaped_names(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from analyzers.render.trace import render_trace, trace_json
    from analyzers.trace.report import analyze_trace

    name = "void f<[bold]x[/bold], 4>"  # [brackets] that rich would read as markup
    events = [*launch(10, 1), *kernel(100, 5, 1, name=name)]
    report = analyze_trace(write_trace(tmp_path, events), top=5)
    data = trace_json(report)
    # issue 10's machine-readable totals, at top level, beside the tables
    assert list(data) == ["path", "events", "kernels", "kernel_ms", "memcpy_ms", "memset_ms", "device_ms",
                          "linked_kernels", "unlinked_kernels", "unlinked", "steps", "classification_coverage",
                          "device_events", "grouping", "tables"]
    assert (data["kernels"], data["linked_kernels"], data["unlinked_kernels"]) == (1, 1, 0)
    assert data["kernel_ms"] == data["device_ms"] == 0.005
    assert data["tables"]["top kernels"][0]["name"] == name
    console = Console(file=io.StringIO(), width=200, record=True)
    render_trace(report, console)
    assert name in console.export_text()


def test_device_events_without_any_launch_are_unlinked(tmp_path: Path) -> None:
    # A device-only trace (or a slice cut from a larger one): nothing to look a correlation up in.
    from analyzers.trace.report import analyze_trace

    report = analyze_trace(write_trace(tmp_path, [X("k", "kernel", 0, 7, 0, 4, correlation=1)]))
    assert report.device_events == 1 and report.grouping == "kernel classes"
    assert table(report.tables["by user annotation"], "annotation") == {"(unlinked)": (4.0, 1)}
