"""Device-clock ranges, driven by a fake stream whose every time is worked out by hand.

`FakeGpu` is one CUDA stream and the host clock together: the test moves the
host clock (Python between calls), launches kernels of given lengths (a launch
takes the host LAUNCH ns before the kernel is queued), and an event recorded
at host time h is reached by the device at max(h, the end of the work queued
before it), as a real stream does. Nothing reads a real clock.
"""
from __future__ import annotations

import pytest

from analyzers.vocabulary import RangeKey
from profiler.recorders.cuda import EventRangeRecorder

US = 1_000  # ns
MS = 1_000_000
LAUNCH = 5 * US  # host time of one kernel launch, more than share_within_ns: a launch is never shared over


class FakeGpu:
    def __init__(self):
        self.host = 0  # host clock, ns
        self.free_at = 0  # when the device finishes what is queued, ns
        self.created = 0
        self.recorded = 0

    def clock(self) -> int:
        return self.host

    def python(self, ns: int) -> None:
        """Host time spent without launching anything."""
        self.host += ns

    def launch(self, ns: int) -> None:
        self.host += LAUNCH
        self.free_at = max(self.host, self.free_at) + ns

    def sync(self) -> None:
        self.host = max(self.host, self.free_at)

    def new_event(self):
        self.created += 1
        return FakeEvent(self)


class FakeEvent:
    def __init__(self, gpu):
        self.gpu, self.t = gpu, None

    def record(self):
        self.gpu.recorded += 1
        self.t = max(self.gpu.host, self.gpu.free_at)

    def elapsed_time(self, end):  # same contract as torch.cuda.Event: milliseconds as a float
        return (end.t - self.t) / MS


def recorder(gpu: FakeGpu, share_within_ns: int = US) -> EventRangeRecorder:
    return EventRangeRecorder(new_event=gpu.new_event, nvtx_on=False, record_function_on=False, clock=gpu.clock,
                              share_within_ns=share_within_ns)


LAYER, NORM, ATTN, MLP = RangeKey("residual", 0), RangeKey("norm", 0), RangeKey("attention", 0), RangeKey("mlp", 0)


def test_device_waiting_on_the_host_goes_to_the_remainder_not_to_residual():
    # layer { norm: 1 ms kernel } 1.5 ms of host Python { attention: 1 ms kernel }. The device idles while
    # each kernel is launched (5 µs, twice) and from the end of norm (1.005 ms) to the attention push
    # (1.505 ms). Before, the 0.5 ms inside the layer was the layer's own time (`residual`); it is the host's.
    gpu = FakeGpu()
    rec = recorder(gpu)
    rec.push(LAYER)
    rec.push(NORM)
    gpu.launch(1 * MS)
    rec.pop()
    gpu.python(1_500 * US)
    rec.push(ATTN)
    gpu.launch(1 * MS)
    rec.pop()
    rec.pop()
    times = rec.take()
    assert times == {LAYER: (0, 1), NORM: (1 * MS, 1), ATTN: (1 * MS, 1)}
    device_span = gpu.free_at  # 2.51 ms from the first edge to the last
    assert device_span - sum(ns for ns, _ in times.values()) == 510 * US  # the remainder: host_gap
    assert rec.stats()["device_wait_ns"] == 510 * US


def test_device_ahead_of_the_host_moves_nothing_and_glue_kernels_stay_in_the_parent():
    # The host queues everything far ahead of the device (a long prompt): past the first launch (the
    # device idles 5 µs for it) no wait is possible, so every range keeps its device time, and the
    # residual add launched between two children is the layer's own work.
    gpu = FakeGpu()
    rec = recorder(gpu)
    rec.push(LAYER)
    rec.push(ATTN)
    gpu.launch(4 * MS)
    rec.pop()
    gpu.python(5 * US)
    gpu.launch(300 * US)  # residual add
    gpu.python(5 * US)
    rec.push(MLP)
    gpu.launch(2 * MS)
    gpu.python(5 * US)
    rec.pop()
    gpu.python(5 * US)
    rec.pop()
    assert rec.take() == {LAYER: (300 * US, 1), ATTN: (4 * MS, 1), MLP: (2 * MS, 1)}
    assert rec.stats()["device_wait_ns"] == LAUNCH


def test_adjacent_edges_share_one_event_and_halve_the_events():
    # layer { norm } { attention } { mlp } with no host time between edges but the launches: 8 edges, 4 events
    # (layer+norm push, norm pop+attention push, attention pop+mlp push, mlp pop+layer pop).
    gpu = FakeGpu()
    rec = recorder(gpu)
    rec.push(LAYER)
    for key, ns in ((NORM, 100 * US), (ATTN, 700 * US), (MLP, 900 * US)):
        rec.push(key)
        gpu.launch(ns)
        rec.pop()
    rec.pop()
    assert rec.take() == {LAYER: (0, 1), NORM: (100 * US, 1), ATTN: (700 * US, 1), MLP: (900 * US, 1)}
    assert (rec.stats()["boundaries"], rec.stats()["events"]) == (8, 4)
    assert gpu.recorded == 4


def test_an_edge_after_a_host_gap_records_its_own_event():
    # 2 µs of host time between the pop and the next push is more than share_within_ns (1 µs): a launch
    # could have happened there, so the push gets an event of its own.
    gpu = FakeGpu()
    rec = recorder(gpu)
    rec.push(NORM)
    gpu.launch(10 * US)
    rec.pop()
    gpu.python(2 * US)
    rec.push(MLP)
    gpu.launch(10 * US)
    rec.pop()
    rec.take()
    assert rec.stats()["events"] == 4


def test_host_cost_per_range_excludes_children():
    # attention holds 35 µs of host time (a launch, then 30 µs); the layer spends 10 µs of its own around it.
    gpu = FakeGpu()
    rec = recorder(gpu)
    rec.push(LAYER)
    gpu.python(4 * US)
    rec.push(ATTN)
    gpu.launch(5 * MS)
    gpu.python(30 * US)
    rec.pop()
    gpu.python(6 * US)
    rec.pop()
    rec.take()
    assert rec.take_host() == {LAYER: (10 * US, 1), ATTN: (35 * US, 1)}
    assert rec.take_host() == {}  # taken once


def test_events_are_reused_across_repeats():
    gpu = FakeGpu()
    rec = recorder(gpu, share_within_ns=0)
    for _ in range(4):  # 4 repeats of one range: 2 events each, created once
        gpu.sync()  # as the prefill does before each repeat
        rec.push(RangeKey("sampling"))
        gpu.launch(1 * MS)
        rec.pop()
        assert rec.take() == {RangeKey("sampling"): (1 * MS, 1)}
    assert gpu.created == 2


def test_take_refuses_open_ranges():
    rec = recorder(FakeGpu())
    rec.push(NORM)
    with pytest.raises(RuntimeError):
        rec.take()


def test_device_phase_marks_are_placed_on_the_host_clock(monkeypatch):
    import torch

    from profiler import prefill

    class Scripted:  # device reaches: start 0 ms, h2d end 0.5 ms, forward end 7 ms, sampling end 7.25 ms
        stamps = [0.0, 0.5, 7.0, 7.25]

        def __init__(self, enable_timing=True):
            self.t = None

        def record(self, stream=None):
            self.t = Scripted.stamps.pop(0)

        def elapsed_time(self, end):
            return end.t - self.t

    monkeypatch.setattr(torch.cuda, "Event", Scripted)
    marks = prefill.DeviceMarks()
    t0 = marks.start()
    for _ in range(3):
        marks.mark()
    assert marks.read() == [t0 + 500_000, t0 + 7_000_000, t0 + 7_250_000]
