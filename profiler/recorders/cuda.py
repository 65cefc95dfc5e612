"""Ranges timed on the device's own clock, with CUDA events.

On a GPU the host returns from a kernel launch long before the kernel runs,
so host time inside a range measures launches, not work. Each range instead
records an event into the stream at push and at pop; the events are read
after the repeat, when the caller has synchronised at the end of TTFT, so no
synchronisation ever happens inside the forward.
"""
from __future__ import annotations

from typing import Callable

from analyzers.vocabulary import DEVICE_TIMING, RangeKey
from profiler.recorders.host import Frame, RangeRecorder


def _cuda_event():
    import torch

    return torch.cuda.Event(enable_timing=True)


class Span:
    """One range on the device clock: its key, its two events, and the index of its parent span (-1: none)."""

    __slots__ = ("key", "start", "end", "parent")

    def __init__(self, key: RangeKey, start, parent: int) -> None:
        self.key, self.start, self.end, self.parent = key, start, None, parent


class EventRangeRecorder(RangeRecorder):
    """Same interface as RangeRecorder; exclusive times come from event pairs at `take()`."""

    timing = DEVICE_TIMING
    host_spans = False  # its stack frames hold event indices, not host times

    def __init__(self, new_event: Callable[[], object] = _cuda_event, nvtx_on: bool = True,
                 record_function_on: bool = True):
        super().__init__(nvtx_on=nvtx_on, record_function_on=record_function_on)
        self._new_event = new_event
        self._pool: list = []
        self._spans: list[Span] = []

    def _event(self):
        event = self._pool.pop() if self._pool else self._new_event()
        event.record()
        return event

    def push(self, key: RangeKey) -> None:
        self._emit.nvtx_push(key)
        rf = self._emit.profiler_range(key)
        if rf is not None:
            rf.__enter__()
        parent = self._stack[-1].start if self._stack else -1
        self._spans.append(Span(key, self._event(), parent))
        self._stack.append(Frame(key, len(self._spans) - 1, rf))  # start: the span's index

    def pop(self) -> None:
        frame = self._stack.pop()
        rf = frame.rf
        self._spans[frame.start].end = self._event()
        if rf is not None:
            rf.__exit__(None, None, None)
        self._emit.nvtx_pop()

    def take(self) -> dict[RangeKey, tuple[int, int]]:
        """Read every event pair (the caller has synchronised) and return exclusive ns per key."""
        if self._stack:
            raise RuntimeError("ranges still open: take() called inside a range")
        spans, self._spans = self._spans, []
        durations = [int(round(span.start.elapsed_time(span.end) * 1e6)) for span in spans]
        child_ns = [0] * len(spans)
        for i, span in enumerate(spans):
            if span.parent >= 0:
                child_ns[span.parent] += durations[i]
        totals: dict[RangeKey, list[int]] = {}
        for i, span in enumerate(spans):
            total = totals.setdefault(span.key, [0, 0])
            total[0] += durations[i] - child_ns[i]
            total[1] += 1
            self._pool.extend((span.start, span.end))
        return {k: (v[0], v[1]) for k, v in totals.items()}
