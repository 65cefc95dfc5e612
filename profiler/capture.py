"""One extra prefill under torch.profiler, apart from the timed repeats.

The profiler adds its own cost (every op recorded, shapes kept), so the
timed repeats never run under it; the profiled repeat is the picture, the
timed repeats are the measurement.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what Kineto's C++ side prints to fd 2 (profiler_start/stop stage lines)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some notebooks): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _activities(on_gpu: bool) -> list:
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU, ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]


def profiled_call(fn: Callable[[], object], on_gpu: bool, raw_trace_path: str) -> object:
    """Run `fn` once under torch.profiler and write the raw Chrome trace; return fn's result.

    A throwaway profiler session runs first: the first session in a process
    initialises CUPTI and Kineto, and kernels launched while that happens
    can be missing from its trace.
    """
    import torch
    from torch.profiler import profile

    activities = _activities(on_gpu)
    with quiet_native_stderr():
        with profile(activities=activities):
            torch.ones(8, device="cuda" if on_gpu else "cpu").sum()
    with quiet_native_stderr():
        prof = profile(activities=activities, record_shapes=True)
        prof.__enter__()
    try:
        result = fn()
    finally:
        with quiet_native_stderr():
            prof.__exit__(None, None, None)
    with quiet_native_stderr():
        prof.export_chrome_trace(raw_trace_path)
    return result
