"""Named ranges: one push/pop emits NVTX, torch.profiler and our own timing.

This is the hot path of an instrumented prefill (a few hundred ranges per
forward), so it keeps per-range work to a clock read, a list push and two
emitter calls, and computes exclusive time on the fly rather than storing
every span.
"""
from __future__ import annotations

import time
from typing import Callable

from analyzers.components import COLOURS, RangeKey

Clock = Callable[[], int]


class _Emitters:
    """NVTX (domain `ttft`) and torch.profiler's record_function, created lazily."""

    def __init__(self, nvtx_on: bool, record_function_on: bool):
        self._domain = None
        self._attrs: dict[RangeKey, object] = {}
        if nvtx_on:
            try:
                import nvtx

                domain = nvtx.get_domain("ttft")
                # A DummyDomain (no tool attached) makes every call a no-op;
                # skip it entirely to save the call.
                if type(domain).__name__ != "DummyDomain":
                    self._domain = domain
            except ImportError:
                self._domain = None
        self._record_function = None
        self._profiling = None
        if record_function_on:
            import torch
            from torch.autograd.profiler import record_function

            self._record_function = record_function
            # A record_function costs ~7 us even with no profiler listening;
            # asking whether one listens costs ~0.1 us.
            self._profiling = torch._C._autograd._profiler_enabled

    def enter(self, key: RangeKey):
        if self._domain is not None:
            attrs = self._attrs.get(key)
            if attrs is None:
                attrs = self._domain.get_event_attributes(
                    message=key.label, color=COLOURS[key.component]
                )
                self._attrs[key] = attrs
            self._domain.push_range(attrs)
        if self._record_function is not None and self._profiling():
            rf = self._record_function(key.label)
            rf.__enter__()
            return rf
        return None

    def exit(self, handle) -> None:
        if handle is not None:
            handle.__exit__(None, None, None)
        if self._domain is not None:
            self._domain.pop_range()


class RangeRecorder:
    """Times nested ranges on the host clock and keeps exclusive time per key.

    Exclusive time (a range minus the ranges nested in it) is what makes the
    rows of a breakdown add up: every nanosecond inside a range belongs to
    exactly one key, and time outside all ranges is `other`.
    """

    def __init__(self, clock: Clock = time.perf_counter_ns, nvtx_on: bool = True,
                 record_function_on: bool = True):
        self._clock = clock
        self._emit = _Emitters(nvtx_on, record_function_on)
        # Each frame: [key, start_ns, child_ns, emitter_handle]
        self._stack: list[list] = []
        self.totals: dict[RangeKey, list[int]] = {}
        # The decoder layer being run, so that module-level functions
        # (rope, the attention function) know their layer.
        self.layer: int | None = None

    @property
    def depth(self) -> int:
        return len(self._stack)

    def push(self, key: RangeKey) -> None:
        handle = self._emit.enter(key)
        self._stack.append([key, self._clock(), 0, handle])

    def pop(self) -> None:
        end = self._clock()
        key, start, child_ns, handle = self._stack.pop()
        self._emit.exit(handle)
        duration = end - start
        if self._stack:
            self._stack[-1][2] += duration
        total = self.totals.get(key)
        if total is None:
            self.totals[key] = [duration - child_ns, 1]
        else:
            total[0] += duration - child_ns
            total[1] += 1

    def pop_if(self, key: RangeKey) -> None:
        """Pop only a range `key` opened: a post-hook runs even when a pre-hook before ours raised."""
        if self._stack and self._stack[-1][0] is key:
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
