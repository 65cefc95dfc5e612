"""The one thing a sampler asks of what it samples.

The sampler owns the thread, the clocks and the rows; a source only knows
how to read its own metrics. Keeping that line means the thread logic is
written once, and a new source (another vendor's library) is one class.
"""
from __future__ import annotations

from typing import Callable, Protocol

# add(t_ns, perf_ns, metric, value): one reading. A source may stamp a row with
# another instant than the tick's (a driver's buffered sample, a GPM window start).
Add = Callable[[int, int, str, float], None]
# gap(t_ns, perf_ns, metric, error): a read that failed mid-run; error is the exception or its class name.
Gap = Callable[[int, int, str, BaseException | str], None]


class Source(Protocol):
    kind: str  # run.json's telemetry.kind: "nvml" or "cpu"
    device: str  # the rows' device column
    unsupported: list[str]  # metrics the device does not offer at all: left out, not gaps
    notes: list[str]  # caveats found while reading, for run.json

    def open(self) -> str | None:
        """Take what reading needs; the reason it cannot, for the warning line, else None."""

    def read(self, t: int, p: int, add: Add, gap: Gap) -> None:
        """One tick's readings; t is time.time_ns(), p perf_counter_ns() of the same instant."""

    def close(self) -> None:
        """Release what open() took; called once, after the last read."""
