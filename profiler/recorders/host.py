"""Named ranges: one push/pop emits NVTX, torch.profiler and our own timing.

This is the hot path of an instrumented prefill (a few hundred ranges per
forward), so it keeps per-range work to a clock read, a list push and two
emitter checks (NVTX only with a tool attached, torch.profiler only while one
records), and computes exclusive time on the fly rather than storing every span.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

from analyzers.vocabulary import COLOURS, HOST_TIMING, NVTX_DOMAIN, RangeKey

Clock = Callable[[], int]

NVTX_MISSING = ("warning: the nvtx package is not installed, so no NVTX ranges are emitted (Nsight Systems "
                "will show no ttft/ ranges); install it with `pip install nvtx`")
_nvtx_warned = [False]  # one warning line per process, however many recorders are made


def _nvtx_missing() -> str:
    """Say once on stderr that NVTX ranges will not exist: without it they vanish without a trace."""
    if not _nvtx_warned[0]:
        _nvtx_warned[0] = True
        print(NVTX_MISSING, file=sys.stderr)
    return NVTX_MISSING


class _Emitters:
    """NVTX (domain `ttft`) and torch.profiler ranges, each one object per label, made on first use."""

    def __init__(self, nvtx_on: bool, record_function_on: bool):
        self._domain = None
        self._attrs: dict[RangeKey, object] = {}
        self.notices: list[str] = []  # what the run should say about these emitters (nvtx missing)
        if nvtx_on:
            try:
                import nvtx

                domain = nvtx.get_domain(NVTX_DOMAIN)
                # A DummyDomain (no tool attached) makes every call a no-op;
                # skip it entirely to save the call.
                if type(domain).__name__ != "DummyDomain":
                    self._domain = domain
            except ImportError:
                self._domain = None
                self.notices.append(_nvtx_missing())
        self._record_function = None
        self._profiling = None
        self._ranges: dict[RangeKey, object] = {}
        if record_function_on:
            import torch

            # The C++ fast path costs ~0.6 us under the profiler against ~7 us for
            # the Python record_function (which dispatches two ops that are
            # themselves profiled and would skew the very ranges they mark).
            fast = getattr(getattr(torch._C, "_profiler", None), "_RecordFunctionFast", None)
            if fast is None:
                from torch.autograd.profiler import record_function as fast
            self._record_function = fast
            # Asking whether a profiler listens costs ~0.1 us; entering a range, more.
            self._profiling = torch._C._autograd._profiler_enabled

    def nvtx_push(self, key: RangeKey) -> None:
        if self._domain is not None:
            attrs = self._attrs.get(key)
            if attrs is None:
                attrs = self._domain.get_event_attributes(message=key.label, color=COLOURS[key.component])
                self._attrs[key] = attrs
            self._domain.push_range(attrs)

    def nvtx_pop(self) -> None:
        if self._domain is not None:
            self._domain.pop_range()

    def profiler_range(self, key: RangeKey):
        """A reusable range object while a torch profiler records, else None."""
        if self._record_function is None or not self._profiling():
            return None
        rf = self._ranges.get(key)
        if rf is None:
            rf = self._ranges[key] = self._record_function(key.label)
        return rf


class Frame:
    """One open range: its key, where it started, the time its children took, its profiler range.

    `start` is a host-clock ns for RangeRecorder and a span index for EventRangeRecorder; slots keep
    a push as cheap as the list it replaced (this is the hot path)."""

    __slots__ = ("key", "start", "child_ns", "rf")

    def __init__(self, key: RangeKey, start: int, rf) -> None:
        self.key, self.start, self.child_ns, self.rf = key, start, 0, rf


class RangeRecorder:
    """Times nested ranges on the host clock and keeps exclusive time per key.

    Exclusive time (a range minus the ranges nested in it) is what makes the
    rows of a breakdown add up: every nanosecond inside a range belongs to
    exactly one key, and time outside all ranges is `other`.
    """

    timing = HOST_TIMING
    host_spans = True

    def __init__(self, clock: Clock = time.perf_counter_ns, nvtx_on: bool = True,
                 record_function_on: bool = True):
        self._clock = clock
        self._emit = _Emitters(nvtx_on, record_function_on)
        self._stack: list[Frame] = []
        self.totals: dict[RangeKey, list[int]] = {}
        # The decoder layer being run, so that module-level functions
        # (rope, the attention function) know their layer.
        self.layer: int | None = None
        # (key, start_ns, end_ns, depth) of every range when a caller wants to place
        # samples in time (telemetry per component); None keeps the hot path free of it.
        self.spans: list[tuple] | None = None

    @property
    def notices(self) -> list[str]:
        """Lines the run should carry about how its ranges were emitted (a missing nvtx package)."""
        return list(self._emit.notices)

    @property
    def depth(self) -> int:
        return len(self._stack)

    def push(self, key: RangeKey) -> None:
        emit = self._emit
        emit.nvtx_push(key)
        rf = emit.profiler_range(key)
        if rf is None:
            start = self._clock()
        else:
            # The profiler stamps its start somewhere inside __enter__; the
            # midpoint of the call keeps our times and the trace's together.
            before = self._clock()
            rf.__enter__()
            start = (before + self._clock()) // 2
        self._stack.append(Frame(key, start, rf))

    def pop(self) -> None:
        frame = self._stack.pop()
        key, start, rf = frame.key, frame.start, frame.rf
        if rf is None:
            end = self._clock()
        else:
            before = self._clock()
            rf.__exit__(None, None, None)
            end = (before + self._clock()) // 2
        self._emit.nvtx_pop()
        duration = end - start
        if self.spans is not None:
            self.spans.append((key, start, end, len(self._stack)))
        if self._stack:
            self._stack[-1].child_ns += duration
        total = self.totals.get(key)
        if total is None:
            self.totals[key] = [duration - frame.child_ns, 1]
        else:
            total[0] += duration - frame.child_ns
            total[1] += 1

    def pop_if(self, key: RangeKey) -> None:
        """Pop only a range `key` opened: a post-hook runs even when a pre-hook before ours raised."""
        if self._stack and self._stack[-1].key is key:
            self.pop()

    def unwind(self) -> None:
        """Close every open range (after a forward raised) so emitters stay balanced."""
        while self._stack:
            self.pop()

    def take(self) -> dict[RangeKey, tuple[int, int]]:
        """Return {key: (exclusive_ns, calls)} since the last take, and reset."""
        if self._stack:
            raise RuntimeError("ranges still open: take() called inside a range")
        out = {k: (v[0], v[1]) for k, v in self.totals.items()}
        self.totals = {}
        return out

    def take_host(self) -> dict[RangeKey, tuple[int, int]]:
        """Host cost per range since the last take: on the host clock it is `take()` itself, so nothing extra."""
        return {}

    def stats(self) -> dict:
        """What the last `take()` knows about its own bookkeeping; the host clock has nothing to add."""
        return {}
