"""One extra prefill under torch.profiler, apart from the timed repeats.

The profiler adds its own cost (every op recorded, shapes kept), so the
timed repeats never run under it; the profiled repeat is the picture, the
timed repeats are the measurement.

CUPTI serves one subscriber: under Nsight Systems (or Nsight Compute) the
tool holds it, and torch.profiler's trace comes out with CPU ops and no
kernels. That is detected twice, before (the environment the tools set up)
and after (no device events in the written trace), and said, never passed
off as a GPU picture.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator, Mapping

# Environment variables a CUDA profiling tool sets in the process it profiles, and the words in their
# value that name one (None: being set at all is the sign).
TOOL_VARIABLES: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("NSYS_PROFILING_SESSION_ID", None),  # nsys started this process
    ("CUDA_INJECTION64_PATH", None),  # the CUDA driver loads this library as its tool (nsys, ncu)
    ("NVTX_INJECTION64_PATH", ("nsight", "nsys", "toolsinjection")),
    ("LD_PRELOAD", ("nsight", "nsys", "toolsinjection", "libcupti")),
)
# Kineto's categories for work that ran on the device
DEVICE_CATEGORIES = (b'"cat": "kernel"', b'"cat":"kernel"', b'"cat": "gpu_memcpy"', b'"cat": "gpu_memset"')


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


def profiler_tool(environ: Mapping[str, str] | None = None) -> str | None:
    """The environment variable that shows a CUDA profiling tool attached to this process, as `NAME=value`."""
    env = os.environ if environ is None else environ
    for name, marks in TOOL_VARIABLES:
        value = env.get(name)
        if value and (marks is None or any(m in value.lower() for m in marks)):
            return f"{name}={value}"
    return None


def tool_notice(device: str, nvtx_only: bool, environ: Mapping[str, str] | None = None) -> str | None:
    """Before a GPU trace under an attached tool: why it will have no kernels, and the flag that avoids it."""
    if nvtx_only or not device.startswith("cuda"):
        return None
    tool = profiler_tool(environ)
    if tool is None:
        return None
    return (f"warning: a CUDA profiling tool is attached ({tool}); CUPTI serves one subscriber, so "
            "torch.profiler's trace will hold CPU ops and no GPU kernels. Under nsys use --nvtx-only "
            "(NVTX ranges, no torch.profiler); the run's own timings (CUDA events) are unaffected.")


def device_event_count(raw_trace_path: str) -> int:
    """Kernels, copies and sets in a raw Kineto trace, counted in its text (no parse of a large file)."""
    with open(raw_trace_path, "rb") as fh:
        text = fh.read()
    return sum(text.count(category) for category in DEVICE_CATEGORIES)


def empty_device_notice(device: str, raw_trace_path: str, environ: Mapping[str, str] | None = None) -> str | None:
    """After a GPU trace: if it holds no device work, its times are the host's, and the run says so."""
    if not device.startswith("cuda") or device_event_count(raw_trace_path) > 0:
        return None
    tool = profiler_tool(environ)
    why = f"a CUDA profiling tool holds CUPTI ({tool})" if tool else "CUPTI recorded no device activity"
    return (f"warning: trace.json.gz holds no GPU kernels ({why}): its durations are CPU (launch) times, "
            "not the GPU's; the breakdown's CUDA-event times are unaffected. Profile without the tool, "
            "or with --nvtx-only under it.")


def profiled_call(fn: Callable[[], object], device: str, raw_trace_path: str) -> object:
    """Run `fn` once under torch.profiler and write the raw Chrome trace; return fn's result.

    A throwaway profiler session runs first: the first session in a process
    initialises CUPTI and Kineto, and kernels launched while that happens
    can be missing from its trace. `device` is where the model runs (its
    own warm-up tensor goes there, not to the current device).
    """
    import torch
    from torch.profiler import profile

    on_gpu = device.startswith("cuda")
    activities = _activities(on_gpu)
    with quiet_native_stderr():
        with profile(activities=activities):
            torch.ones(8, device=device).sum()
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
