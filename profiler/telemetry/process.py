"""This process's CPU use and memory as a telemetry source.

On a CPU run the work happens here, so this process is what to watch; on a
GPU without NVML it is the next best thing to an empty run. It always opens.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable

from profiler.telemetry.source import Add, Gap


class ProcessSource:
    """`cpu_clock` is this process's CPU time in ns (all threads); tests pass a scripted one."""

    kind = "cpu"
    device = "cpu"

    def __init__(self, cpu_clock: Callable[[], int] = time.process_time_ns) -> None:
        self.unsupported: list[str] = []
        self.notes: list[str] = []
        self._cpu_clock = cpu_clock
        self._prev: tuple[int, int] | None = None  # (cpu ns, perf ns) of the last tick
        self._statm = True

    def open(self) -> str | None:
        return None

    def close(self) -> None:
        return None

    def read(self, t: int, p: int, add: Add, gap: Gap) -> None:
        """CPU time of all this process's threads per wall time: 100 = one core busy."""
        cpu = int(self._cpu_clock())
        if self._prev is not None and p > self._prev[1]:  # a rate needs two ticks
            add(t, p, "cpu_util_pct", 100.0 * (cpu - self._prev[0]) / (p - self._prev[1]))
        self._prev = (cpu, p)
        add(t, p, "rss_bytes", self._rss())

    def _rss(self) -> int:
        if self._statm:
            try:
                with open("/proc/self/statm", "rb") as fh:
                    return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError, IndexError):
                self._statm = False
                self.notes.append("rss_bytes is the peak resident size (getrusage): /proc/self/statm is unreadable")
        import resource  # not on Windows; reached only where /proc is missing

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB
