"""Recorders: what times the named ranges, behind one protocol.

The host clock is the truth on a CPU; on a GPU, CUDA events read the device's
own clock; a null recorder keeps the hooks' calls valid while timing nothing
(an uninstrumented baseline). Callers pick one by what they need and read
its `timing` and `host_spans`, never its class.
"""
from __future__ import annotations

from typing import Protocol

from analyzers.vocabulary import DEVICE_TIMING, HOST_TIMING, RangeKey


class Recorder(Protocol):
    """Nested ranges in, exclusive time per key out."""

    timing: str  # analyzers.vocabulary HOST_TIMING or DEVICE_TIMING: the clock `take()` reports on
    host_spans: bool  # whether `spans` can hold host-clock spans (telemetry per component)
    layer: int | None  # the decoder layer being run, for module-level functions
    spans: list | None  # (key, start_ns, end_ns, depth) per range when a caller asks, else None
    notices: list[str]  # lines the run should carry (a missing nvtx package)

    def push(self, key: RangeKey) -> None: ...
    def pop(self) -> None: ...
    def pop_if(self, key: RangeKey) -> None: ...
    def unwind(self) -> None: ...
    def take(self) -> dict[RangeKey, tuple[int, int]]: ...
    def take_host(self) -> dict[RangeKey, tuple[int, int]]: ...  # host ns per range where `take` is not host time
    def stats(self) -> dict: ...  # the last take's bookkeeping (events recorded, device wait moved out)


class NullRecorder:
    """Times nothing; the instrumentation's hooks still run, so its overhead can be measured alone."""

    timing = HOST_TIMING
    host_spans = False

    def __init__(self) -> None:
        self.layer: int | None = None
        self.spans: list | None = None
        self.notices: list[str] = []

    def push(self, key: RangeKey) -> None:
        pass

    def pop(self) -> None:
        pass

    def pop_if(self, key: RangeKey) -> None:
        pass

    def unwind(self) -> None:
        pass

    def take(self) -> dict[RangeKey, tuple[int, int]]:
        return {}

    def take_host(self) -> dict[RangeKey, tuple[int, int]]:
        return {}

    def stats(self) -> dict:
        return {}


def default_recorder(device: str, record_function_on: bool = True) -> Recorder:
    """CUDA events on a GPU (host time there measures launches, not work), the host clock elsewhere.

    On a GPU two range edges share one event when the host gap between them is under half the
    cheapest kernel launch measured here: nothing can have been queued in between.
    """
    if device.startswith("cuda"):
        from profiler.recorders.cuda import EventRangeRecorder, launch_floor_ns

        return EventRangeRecorder(record_function_on=record_function_on,
                                  share_within_ns=launch_floor_ns(device) // 2)
    from profiler.recorders.host import RangeRecorder

    return RangeRecorder(record_function_on=record_function_on)


def nvtx_only_recorder(device: str) -> Recorder:
    """Under Nsight Systems CUPTI serves nsys, so torch.profiler stays out entirely."""
    return default_recorder(device, record_function_on=False)


__all__ = ["Recorder", "NullRecorder", "default_recorder", "nvtx_only_recorder", "DEVICE_TIMING", "HOST_TIMING"]
