"""What prefill lint needs from a run's trace, read in one pass: SDPA backends, dtype conversions, host syncs.

Lint's trace rules ask three questions of the same Kineto trace (which SDPA kernel ran, which
conversions moved activations in norms and attention, which ops blocked the host inside the
forward), so the trace is parsed once per run into a `TraceFacts` and every rule reads that.
The frame of `analyzers.trace.load` drops the recorded shapes and dtypes (`Input Dims`,
`Input type`, `Concrete Inputs`), which are exactly what a conversion's bytes need, so this
module decodes the file itself (after the same size guard, `read_trace_bytes`) with those
arguments kept raw and parsed only for the few ops it keeps. A missing or unreadable trace
gives None: lint then stays silent on what only a trace could show, never fails a run.
"""
from __future__ import annotations

import functools
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from analyzers.errors import InputError
from analyzers.trace.nesting import innermost, nest
from analyzers.trace.read import DEFAULT_MAX_BYTES, read_trace_bytes
from analyzers.vocabulary import LABEL_PREFIX, PREFILL_RANGES, parse_label

__all__ = ["OpTime", "TraceFacts", "trace_facts", "read_facts"]

# The backend op SDPA dispatches to, one per call: the math kernel, or a fused one (flash, flash_for_cpu,
# efficient, cudnn, fused_attention_overrideable). Prefixes, so the _for_mps/_for_cpu variants match. The
# kernels' own ops nested below them (_flash_attention_forward, ...) are not counted, or a call would count twice.
SDPA_MATH = ("aten::_scaled_dot_product_attention_math",)
SDPA_FUSED = ("aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_efficient_attention",
              "aten::_scaled_dot_product_cudnn_attention", "aten::_scaled_dot_product_fused_attention")
SDPA_ENTRY = "aten::scaled_dot_product_attention"
CONVERSION = "aten::_to_copy"  # what .to(dtype), .float(), .half() and .type() all dispatch to
# Ops that wait for the device. aten::nonzero only does on a GPU (it must learn its output's size);
# the rule that reads these decides by the run's device.
SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero",
            "cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize")
RANGE_CATS = ("cpu_op", "user_annotation")  # our record_function ranges (not the exported ttft_component copies)
LAUNCH_CATS = ("cuda_runtime", "cuda_driver")
DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
# How a trace spells a tensor's dtype in `Input type`, and c10::ScalarType codes in `Concrete Inputs`.
TYPE_NAMES = {"float": "float32", "double": "float64", "c10::BFloat16": "bfloat16", "c10::Half": "float16",
              "c10::Float8_e4m3fn": "fp8", "c10::Float8_e5m2": "fp8"}
SCALAR_TYPES = {5: "float16", 6: "float32", 7: "float64", 15: "bfloat16", 23: "fp8", 24: "fp8"}
FLOAT_BYTES = {"fp8": 1, "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


@dataclass(frozen=True)
class OpTime:
    """One op of interest in the forward, where it ran and what it cost."""

    name: str
    where: str  # the innermost ttft range without its prefix ("norm/L0"), or "other" outside every range
    ms: float  # its kernels' device time where the trace has kernels, else its host time
    numel: int = 0  # elements of its first input (conversions)
    src: str | None = None  # a conversion's input dtype, canonical name (None: not a float, or not recorded)
    dst: str | None = None  # a conversion's output dtype

    @property
    def component(self) -> str:
        return self.where.split("/", 1)[0]


@dataclass(frozen=True)
class TraceFacts:
    """What the trace says about the forward of its one profiled prefill."""

    sdpa: Counter  # SDPA backend op name -> calls
    sdpa_masked: int  # scaled_dot_product_attention calls given an explicit attn_mask
    conversions: tuple[OpTime, ...]  # float-to-float aten::_to_copy, with sizes
    syncs: tuple[OpTime, ...]  # outermost host-device syncs (an item's own _local_scalar_dense is not counted twice)
    device_timed: bool  # ms are the device's (the trace has kernels), not the host's


class _Args(msgspec.Struct, gc=False):
    dims: msgspec.Raw = msgspec.field(default=msgspec.Raw(b"null"), name="Input Dims")
    types: msgspec.Raw = msgspec.field(default=msgspec.Raw(b"null"), name="Input type")
    concrete: msgspec.Raw = msgspec.field(default=msgspec.Raw(b"null"), name="Concrete Inputs")
    correlation: int | str | None = None


class _Event(msgspec.Struct, gc=False):
    name: str = ""
    cat: str = ""
    ph: str = ""
    pid: int | str = ""
    tid: int | str = ""
    ts: float = math.nan
    dur: float = math.nan
    args: _Args | None = None


class _Trace(msgspec.Struct, gc=False):
    traceEvents: list[_Event] = []  # noqa: N815 (Kineto's key)
    baseTimeNanoseconds: int | None = None  # noqa: N815
    ttft_profile: dict | None = None


_DECODER = msgspec.json.Decoder(_Trace)


def trace_facts(run) -> TraceFacts | None:
    """The facts of the run's trace; None without one (no trace kept, a run not yet in a folder, junk)."""
    if not run.trace_file or not run.path:
        return None
    path = Path(run.path) / run.trace_file
    try:
        info = path.stat()
    except OSError:
        return None
    return _cached(str(path), info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=8)
def _cached(path: str, _mtime_ns: int, _size: int) -> TraceFacts | None:
    """A run's tables are computed more than once (profile, then report): the file is parsed once."""
    return read_facts(path)


def read_facts(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> TraceFacts | None:
    try:
        doc = _DECODER.decode(read_trace_bytes(Path(path), max_bytes))
    except (InputError, msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    events = [e for e in doc.traceEvents if e.ph == "X" and math.isfinite(e.ts) and math.isfinite(e.dur)]
    locate = _Locator(events, _forward_window(doc))
    device = _DeviceTime(events)
    sdpa, masked, conversions, syncs = Counter(), 0, [], []
    for e in events:
        if not _wanted(e.name) or not locate.in_forward(e):
            continue
        if e.name.startswith(SDPA_MATH) or e.name.startswith(SDPA_FUSED):
            sdpa[e.name] += 1
        elif e.name == SDPA_ENTRY:
            masked += _has_mask(e)
        elif e.name == CONVERSION:
            op = _conversion(e, locate.where(e), device.ms(e))
            if op is not None:
                conversions.append(op)
        else:
            syncs.append(e)
    return TraceFacts(sdpa, masked, tuple(conversions), _outermost(syncs, locate), device.has_kernels)


def _wanted(name: str) -> bool:
    return name in (SDPA_ENTRY, CONVERSION) or name in SYNC_OPS or name.startswith(SDPA_MATH + SDPA_FUSED)


def _forward_window(doc: _Trace) -> tuple[float, float] | None:
    """The forward phase on the trace's clock (µs since baseTimeNanoseconds), from the phase marks
    ttft-profile writes into the trace; None for a trace without them."""
    meta = doc.ttft_profile or {}
    marks = meta.get("phase_marks_unix_ns")
    if doc.baseTimeNanoseconds is None or not isinstance(marks, list) or len(marks) < 3:
        return None
    try:
        return (marks[1] - doc.baseTimeNanoseconds) / 1e3, (marks[2] - doc.baseTimeNanoseconds) / 1e3
    except TypeError:
        return None


class _Locator:
    """Which ttft range an op ran in, and whether it ran in the forward (not h2d, sampling or d2h)."""

    def __init__(self, events: list[_Event], window: tuple[float, float] | None):
        self.ranges = [e for e in events if e.cat in RANGE_CATS and e.name.startswith(LABEL_PREFIX)
                       and parse_label(e.name) is not None]
        self.window = window
        self.thread_ids: dict = {}
        self.nesting = nest(np.array([self._thread(e) for e in self.ranges], dtype=np.int64),
                            np.array([e.ts for e in self.ranges]), np.array([e.dur for e in self.ranges]))

    def _thread(self, e: _Event) -> int:
        return self.thread_ids.setdefault((str(e.pid), str(e.tid)), len(self.thread_ids))

    def where(self, e: _Event) -> str:
        found = innermost(self.nesting, np.array([self._thread(e)]), np.array([e.ts]))[0]
        return self.ranges[found].name[len(LABEL_PREFIX):] if found >= 0 else "other"

    def in_forward(self, e: _Event) -> bool:
        if self.window is not None:
            return self.window[0] <= e.ts <= self.window[1]
        where = self.where(e)  # no phase marks: inside one of our ranges other than the prefill's own
        return where != "other" and where.split("/", 1)[0] not in PREFILL_RANGES


class _DeviceTime:
    """An op's cost on the device: the kernels launched while it ran on its thread (by correlation id)."""

    def __init__(self, events: list[_Event]):
        kernels: dict = {}
        for e in events:
            if e.cat in DEVICE_CATS and e.args is not None and e.args.correlation is not None:
                kernels[e.args.correlation] = kernels.get(e.args.correlation, 0.0) + e.dur
        self.has_kernels = bool(kernels)
        launches = sorted((str(e.tid), e.ts, kernels.get(e.args.correlation, 0.0)) for e in events
                          if e.cat in LAUNCH_CATS and e.args is not None and e.args.correlation in kernels)
        self.by_thread: dict = {}
        for tid, ts, dur in launches:
            self.by_thread.setdefault(tid, ([], []))
            self.by_thread[tid][0].append(ts)
            self.by_thread[tid][1].append(dur)

    def ms(self, e: _Event) -> float:
        if not self.has_kernels:
            return e.dur / 1e3
        ts, dur = self.by_thread.get(str(e.tid), ([], []))
        lo, hi = np.searchsorted(ts, e.ts, "left"), np.searchsorted(ts, e.ts + e.dur, "right")
        return float(sum(dur[lo:hi])) / 1e3


def _raw(value: msgspec.Raw):
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError:
        return None


def _has_mask(e: _Event) -> bool:
    """SDPA's fourth argument is attn_mask: recorded dims there mean one was passed."""
    dims = _raw(e.args.dims) if e.args is not None else None
    return isinstance(dims, list) and len(dims) > 3 and bool(dims[3])


def _conversion(e: _Event, where: str, ms: float) -> OpTime | None:
    """A float-to-float dtype change with its size; None for integer, bool and same-dtype copies or no shapes."""
    if e.args is None:
        return None
    dims, types, concrete = _raw(e.args.dims), _raw(e.args.types), _raw(e.args.concrete)
    if not (isinstance(dims, list) and dims and isinstance(dims[0], list) and isinstance(types, list) and types):
        return None
    src = TYPE_NAMES.get(types[0]) if isinstance(types[0], str) else None
    code = concrete[1] if isinstance(concrete, list) and len(concrete) > 1 else ""
    dst = SCALAR_TYPES.get(int(code)) if isinstance(code, str) and code.isascii() and code.isdecimal() else None
    if src is None or dst is None or src == dst or not all(isinstance(d, int) for d in dims[0]):
        return None
    return OpTime(e.name, where, ms, math.prod(dims[0]), src, dst)


def _outermost(syncs: list[_Event], locate: _Locator) -> tuple[OpTime, ...]:
    """One entry per sync: an op inside another sync on its thread (item -> _local_scalar_dense ->
    cudaStreamSynchronize) is that sync, not a second one."""
    kept: list[_Event] = []
    for e in sorted(syncs, key=lambda e: (str(e.pid), str(e.tid), e.ts, -e.dur)):
        last = kept[-1] if kept else None
        if last is not None and (last.pid, last.tid) == (e.pid, e.tid) and e.ts + e.dur <= last.ts + last.dur:
            continue
        kept.append(e)
    return tuple(OpTime(e.name, locate.where(e), e.dur / 1e3) for e in kept)
