"""Device-clock ranges, driven by fake CUDA events whose times are scripted by hand."""
from __future__ import annotations

from analyzers.vocabulary import RangeKey
from profiler.recorders.cuda import EventRangeRecorder


class FakeClock:
    """Stands in for the GPU stream: each record() stamps the next scripted device time (ms)."""

    def __init__(self, *stamps_ms):
        self.stamps = list(stamps_ms)
        self.created = 0

    def new_event(self):
        self.created += 1
        return FakeEvent(self)


class FakeEvent:
    def __init__(self, clock):
        self.clock, self.t = clock, None

    def record(self):
        self.t = self.clock.stamps.pop(0)

    def elapsed_time(self, end):  # same contract as torch.cuda.Event: milliseconds
        return end.t - self.t


def test_exclusive_device_time_and_no_reads_before_take():
    # layer 0.0..1.0 ms holds attention 0.1..0.6 and mlp 0.6..0.9 ms:
    # attention 0.5 ms, mlp 0.3 ms, layer 1.0 - 0.8 = 0.2 ms exclusive.
    clock = FakeClock(0.0, 0.1, 0.6, 0.6, 0.9, 1.0)
    rec = EventRangeRecorder(new_event=clock.new_event, nvtx_on=False, record_function_on=False)
    layer, attn, mlp = RangeKey("residual", 0), RangeKey("attention", 0), RangeKey("mlp", 0)
    rec.push(layer)
    rec.push(attn)
    rec.pop()
    rec.push(mlp)
    rec.pop()
    rec.pop()
    times = rec.take()
    assert times == {layer: (200_000, 1), attn: (500_000, 1), mlp: (300_000, 1)}


def test_events_are_reused_across_repeats():
    clock = FakeClock(*[float(i) for i in range(8)])
    rec = EventRangeRecorder(new_event=clock.new_event, nvtx_on=False, record_function_on=False)
    for _ in range(4):  # 4 repeats of one range: 2 events each, created once
        rec.push(RangeKey("sampling"))
        rec.pop()
        assert rec.take() == {RangeKey("sampling"): (1_000_000, 1)}
    assert clock.created == 2


def test_device_phase_marks_are_placed_on_the_host_clock(monkeypatch):
    import torch

    from profiler import prefill

    # device reaches: start 0 ms, h2d end 0.5 ms, forward end 7 ms, sampling end 7.25 ms
    clock = FakeClock(0.0, 0.5, 7.0, 7.25)
    monkeypatch.setattr(torch.cuda, "Event", lambda enable_timing=True: clock.new_event())
    marks = prefill.DeviceMarks()
    t0 = marks.start()
    for _ in range(3):
        marks.mark()
    assert marks.read() == [t0 + 500_000, t0 + 7_000_000, t0 + 7_250_000]
