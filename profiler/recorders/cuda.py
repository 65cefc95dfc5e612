"""Ranges timed on the device's own clock, with CUDA events.

On a GPU the host returns from a kernel launch long before the kernel runs,
so host time inside a range measures launches, not work. Each range boundary
instead records an event into the stream; the events are read after the
repeat, when the caller has synchronised at the end of TTFT, so no
synchronisation ever happens inside the forward.

Three refinements keep the numbers honest when the host, not the device, is
the bottleneck (short prompts on a fast GPU):

- A boundary shares the previous boundary's event when the host got there
  faster than any kernel launch can take (`share_within_ns`): nothing can
  have been queued between them, so one event marks both. Adjacent ranges
  (a pop followed by a push, a push by a nested push) then cost one event, not two.
- The device time between two events splits into time the device worked and
  time it sat waiting for the host: the device cannot reach event i before the
  host records it, so after it reached event i-1 it waited at most
  `host(i) - device(i-1)`. That wait goes to the remainder (`host_gap`), not to
  whichever range was open; a range keeps at least the device time spent after
  its host work was queued. When the device runs behind the host (long
  prompts), that bound is zero and nothing moves.
- Each range's host cost (host time inside it, children excluded) is kept
  alongside, so a run shows which components the host cannot launch fast enough.
"""
from __future__ import annotations

import functools
import time
from typing import Callable

from analyzers.vocabulary import DEVICE_TIMING, RangeKey
from profiler.recorders.host import Clock, Frame, RangeRecorder

# Without a measured launch floor (a recorder built by hand): below 1 µs no PyTorch op reaches the driver.
SHARE_WITHIN_NS = 1_000


def _cuda_event():
    import torch

    return torch.cuda.Event(enable_timing=True)


@functools.lru_cache(maxsize=None)
def launch_floor_ns(device: str, tries: int = 50) -> int:
    """The shortest host time of one tiny kernel launch from Python on this machine.

    A host gap shorter than it cannot hold a launch, which is what lets two
    boundaries share one event. Measured once per process and device.
    """
    import torch

    x = torch.zeros(1, device=device)
    best = None
    for _ in range(tries):
        t = time.perf_counter_ns()
        x.add_(1)
        took = time.perf_counter_ns() - t
        best = took if best is None else min(best, took)
    torch.cuda.synchronize(device)
    return int(best)


class Span:
    """One range: its key, the events at its two ends, its parent span (-1: none), host ns at both ends."""

    __slots__ = ("key", "start", "end", "parent", "host_start", "host_end")

    def __init__(self, key: RangeKey, start: int, parent: int, host_start: int) -> None:
        self.key, self.start, self.end, self.parent = key, start, start, parent
        self.host_start = self.host_end = host_start


class EventRangeRecorder(RangeRecorder):
    """Same interface as RangeRecorder; exclusive device times come from the boundary events at `take()`."""

    timing = DEVICE_TIMING
    host_spans = False  # its stack frames hold span indices, not host times

    def __init__(self, new_event: Callable[[], object] = _cuda_event, nvtx_on: bool = True,
                 record_function_on: bool = True, clock: Clock = time.perf_counter_ns,
                 share_within_ns: int = SHARE_WITHIN_NS):
        super().__init__(clock=clock, nvtx_on=nvtx_on, record_function_on=record_function_on)
        self._new_event = new_event
        self.share_within_ns = int(share_within_ns)
        self._pool: list = []
        self._spans: list[Span] = []
        self._events: list = []  # events recorded this repeat, in stream order
        self._hosts: list[int] = []  # host ns just before each was recorded
        self._after = 0  # host ns just after the last record returned
        self._boundaries = 0
        self._host: dict[RangeKey, tuple[int, int]] = {}
        self._stats: dict = {}

    def _boundary(self) -> tuple[int, int]:
        """(event index, host ns) of a range edge: the last event again if nothing can have run since it."""
        now = self._clock()
        self._boundaries += 1
        events = self._events
        if events and now - self._after < self.share_within_ns:
            return len(events) - 1, now
        event = self._pool.pop() if self._pool else self._new_event()
        event.record()
        events.append(event)
        self._hosts.append(now)
        self._after = self._clock()
        return len(events) - 1, now

    def push(self, key: RangeKey) -> None:
        self._emit.nvtx_push(key)
        rf = self._emit.profiler_range(key)
        if rf is not None:
            rf.__enter__()
        parent = self._stack[-1].start if self._stack else -1
        index, now = self._boundary()
        self._spans.append(Span(key, index, parent, now))
        self._stack.append(Frame(key, len(self._spans) - 1, rf))  # start: the span's index

    def pop(self) -> None:
        frame = self._stack.pop()
        rf = frame.rf
        span = self._spans[frame.start]
        span.end, span.host_end = self._boundary()
        if rf is not None:
            rf.__exit__(None, None, None)
        self._emit.nvtx_pop()

    def _busy_ns(self) -> list[int]:
        """Cumulative device ns the device worked up to each event, waits for the host taken out.

        Device times go on the host clock from the first event: the caller synchronised
        just before it, so the device reached it as the host recorded it.
        """
        events, hosts = self._events, self._hosts
        first, h0 = events[0], hosts[0]
        device = [h0] + [h0 + int(round(first.elapsed_time(e) * 1e6)) for e in events[1:]]
        busy, idle = [0] * len(events), 0
        for i in range(1, len(events)):
            segment = max(device[i] - device[i - 1], 0)
            waited = min(max(hosts[i] - device[i - 1], 0), segment)
            busy[i] = busy[i - 1] + segment - waited
            idle += waited
        self._stats["device_wait_ns"] = idle
        return busy

    def take(self) -> dict[RangeKey, tuple[int, int]]:
        """Read the events (the caller has synchronised) and return exclusive device ns per key."""
        if self._stack:
            raise RuntimeError("ranges still open: take() called inside a range")
        spans = self._spans
        self._stats = {"boundaries": self._boundaries, "events": len(self._events)}
        busy = self._busy_ns() if self._events else []
        device = [busy[s.end] - busy[s.start] for s in spans]
        host = [s.host_end - s.host_start for s in spans]
        device_child, host_child = [0] * len(spans), [0] * len(spans)
        for i, span in enumerate(spans):
            if span.parent >= 0:
                device_child[span.parent] += device[i]
                host_child[span.parent] += host[i]
        totals: dict[RangeKey, list[int]] = {}
        for i, span in enumerate(spans):
            total = totals.setdefault(span.key, [0, 0, 0])
            total[0] += device[i] - device_child[i]
            total[1] += 1
            total[2] += host[i] - host_child[i]
        self._pool.extend(self._events)
        self._spans, self._events, self._hosts, self._boundaries, self._after = [], [], [], 0, 0
        self._host = {k: (v[2], v[1]) for k, v in totals.items()}
        return {k: (v[0], v[1]) for k, v in totals.items()}

    def take_host(self) -> dict[RangeKey, tuple[int, int]]:
        """Host ns inside each range (children excluded) over the last `take()`: the cost of launching it."""
        out, self._host = self._host, {}
        return out

    def stats(self) -> dict:
        """The last `take()`'s range edges, events recorded (shared edges need none) and device wait moved out."""
        return {**self._stats, "share_within_ns": self.share_within_ns}
