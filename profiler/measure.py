"""Time warm prefills end to end and return a `Run`.

TTFT here is what a user waits for: token ids on the host -> transfer ->
prefill forward (logits for the last position only) -> sampling -> the
first token id back on the host, with the device synchronised at both ends.
"""
from __future__ import annotations

import datetime as _dt
import inspect
import os
import platform
import sys
import time
from typing import Callable

from analyzers.vocabulary import RangeKey
from analyzers.run import Run
from profiler.errors import UsageError, first_line
from profiler.instrumentation import instrument
from profiler.recorders.host import RangeRecorder
from profiler.sampling import Sampling

Progress = Callable[[str, int, int], None]  # (phase, done, total)

H2D, SAMPLING, D2H = RangeKey("h2d"), RangeKey("sampling"), RangeKey("d2h")


def _versions() -> dict:
    import torch
    import transformers

    from profiler import __version__

    return {
        "ttft_profile": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
    }


def _model_device_dtype(model) -> tuple[str, str]:
    param = next(model.parameters())
    device = str(param.device)
    if device == "cuda":
        device = "cuda:0"
    return device, str(param.dtype).replace("torch.", "")


def _accepts_logits_to_keep(model) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class _HostMarks:
    """Phase edges on the host clock: the truth where the host does the work (CPU)."""

    def start(self) -> int:
        self.t0 = time.perf_counter_ns()
        self.edges = []
        return self.t0

    def mark(self) -> None:
        self.edges.append(time.perf_counter_ns())

    def read(self) -> list[int]:
        return self.edges


class _DeviceMarks(_HostMarks):
    """Phase edges where the device reaches them: a host clock read after launching the forward
    would mark its launch, not its end. Events are read after the closing synchronisation and
    placed on the host clock from the start, when host and device were synchronised."""

    def __init__(self):
        import torch

        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]

    def start(self) -> int:
        self.t0 = time.perf_counter_ns()
        self._events[0].record()
        self._used = 1
        return self.t0

    def mark(self) -> None:
        self._events[self._used].record()
        self._used += 1

    def read(self) -> list[int]:
        ref = self._events[0]
        return [self.t0 + int(ref.elapsed_time(e) * 1e6) for e in self._events[1:self._used]]


def _one_prefill(model, ids_host, device, rec, sample, sync, forward_kwargs, marks=None):
    """One timed TTFT; returns (ns, outputs, phase marks). Outputs stay alive until after the
    clock stops, as a server keeps the KV cache: freeing it is not part of TTFT. The marks
    (perf_ns at the phase edges) place telemetry samples in a phase."""
    marks = marks or _HostMarks()
    sync()
    start = marks.start()
    rec.push(H2D)
    ids = ids_host.to(device)
    rec.pop()
    marks.mark()
    outputs = model(input_ids=ids, use_cache=True, **forward_kwargs)
    marks.mark()
    rec.push(SAMPLING)
    token = sample(outputs.logits[:, -1, :])
    rec.pop()
    marks.mark()
    rec.push(D2H)
    token_host = token.to("cpu")  # blocks until the device is done
    rec.pop()
    sync()
    end = time.perf_counter_ns()
    h2d_end, forward_end, sampling_end = marks.read()
    return end - start, (outputs, token_host), (start, h2d_end, forward_end, sampling_end, end)


def profile_prefill(
    model,
    seq_len: int = 2048,
    *,
    batch: int = 1,
    warmup: int = 2,
    repeat: int = 5,
    sampling: Sampling | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    recorder: RangeRecorder | None = None,
    trace_dir: str | None = None,
    telemetry_interval_ms: float | None = 10.0,
    vocab_size: int | None = None,
    meta: dict | None = None,
) -> Run:
    """Profile the prefill of a causal LM already in memory and return a `Run`.

    With `trace_dir`, one more prefill runs under torch.profiler after the
    timed ones and its trace is written there as `trace.json.gz` (save the
    Run into the same folder). Telemetry (NVML on a GPU, process CPU and
    memory on a CPU) is sampled every `telemetry_interval_ms` from before the
    warmup to after the last prefill; None switches it off. `meta` overrides
    recorded fields (model name, source, layers) that the model object cannot tell.
    """
    import torch

    if seq_len < 1:
        raise UsageError(f"seq_len {seq_len} must be at least 1; pass the prompt length in tokens.")
    if batch < 1:
        raise UsageError(f"batch {batch} must be at least 1.")
    if repeat < 1:
        raise UsageError(f"--repeat {repeat} must be at least 1; use --repeat 5 or more for a stable p50.")
    if warmup < 0:
        raise UsageError(f"--warmup {warmup} is negative; use 0 or more.")
    sampling = sampling or Sampling()
    device, dtype = _model_device_dtype(model)
    config = getattr(model, "config", None)
    vocab = int(vocab_size or getattr(config, "vocab_size", 0) or 0)
    if vocab < 1:
        raise UsageError("the model has no config.vocab_size; pass vocab_size= so the random prompt's ids fit it.")
    if trace_dir is not None:
        os.makedirs(trace_dir, exist_ok=True)  # fail now, not after every prefill has run
    generator = torch.Generator().manual_seed(seed)
    ids_host = torch.randint(0, vocab, (batch, seq_len), generator=generator)
    sample = sampling.make(device)
    if device.startswith("cuda"):
        sync = torch.cuda.synchronize
    else:
        def sync():
            return None
    keep_last = _accepts_logits_to_keep(model)
    forward_kwargs = {"logits_to_keep": 1} if keep_last else {}
    on_gpu = device.startswith("cuda")
    if recorder is None:
        if on_gpu:
            from profiler.recorders.cuda import EventRangeRecorder

            recorder = EventRangeRecorder()
        else:
            recorder = RangeRecorder()
    rec = recorder
    total = warmup + repeat + (1 if trace_dir is not None else 0)
    samples: list[int] = []
    rows: list[dict] = []
    cold_ns = None
    traced: dict = {}

    phase_marks = _DeviceMarks() if on_gpu else _HostMarks()

    def prefill():
        try:
            return _one_prefill(model, ids_host, device, rec, sample, sync, forward_kwargs, phase_marks)
        except Exception as exc:
            if _is_oom(exc):
                raise MemoryError(first_line(exc, "out of memory")) from None
            raise

    from profiler import telemetry_run

    sampler = telemetry_run.start_sampler(device, telemetry_interval_ms)
    # Sample-to-component attribution needs range spans on the host clock (CPU runs).
    log_spans = sampler is not None and type(rec) is RangeRecorder
    marks, spans, raw_trace = [], [], None
    try:
        with torch.inference_mode(), instrument(model, rec) as info:
            for step in range(warmup + repeat):
                measured = step >= warmup
                rec.spans = [] if log_spans else None
                ns, keep, mark = prefill()
                del keep
                times = rec.take()
                if cold_ns is None:
                    cold_ns = ns
                if measured:
                    rows.extend(_rows(times, len(samples)))
                    samples.append(ns)
                    marks.append(mark)
                    if log_spans:
                        spans.append(sorted(((k.component, a, b, d) for k, a, b, d in rec.spans),
                                            key=lambda span: span[1]))
                if progress is not None:
                    progress("repeat" if measured else "warmup", step + 1, total)
            rec.spans = None
            if trace_dir is not None:
                traced, raw_trace = _traced_repeat(prefill, rec, on_gpu, trace_dir)
                if progress is not None:
                    progress("trace", total, total)
    finally:
        if sampler is not None:
            sampler.stop()
    telemetry, telemetry_rows = None, []
    if sampler is not None:
        telemetry = telemetry_run.summary(sampler, marks, spans if log_spans else None)
        telemetry_rows = sampler.samples()
    if raw_trace is not None:
        _finish_trace(raw_trace, trace_dir, traced["profiled_ttft_ns"], telemetry_rows)
    present = sorted(info.components | {"h2d", "sampling", "d2h"})
    name = getattr(config, "_name_or_path", "") or type(model).__name__
    fields = dict(
        model=name, seq_len=seq_len, batch=batch, dtype=dtype, device=device,
        device_name=torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.machine(),
        attn=str(getattr(config, "_attn_implementation", "unknown")), warmup=warmup, repeat=repeat,
        ttft_ns=samples, cold_ttft_ns=int(cold_ns), component_ns=rows, components_present=present,
        model_source="in-memory", model_origin=type(model).__name__, random_weights=False,
        layers_built=int(getattr(config, "num_hidden_layers", 0) or 0),
        layers_total=int(getattr(config, "num_hidden_layers", 0) or 0),
        logits_kept="last" if keep_last else "all", sampling=sampling.describe(),
        timing="cuda-events" if type(rec).__name__ == "EventRangeRecorder" else "host",
        config=config.to_dict() if hasattr(config, "to_dict") else {},
        versions=_versions(), command=list(sys.argv),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    fields.update(traced)
    fields.update(telemetry=telemetry, telemetry_samples=telemetry_rows)
    fields.update(meta or {})
    return Run(**fields)


def _rows(times: dict, repeat: int) -> list[dict]:
    return [{"repeat": repeat, "component": key.component, "layer": key.layer, "detail": key.detail,
             "ns": ns, "calls": calls} for key, (ns, calls) in times.items()]


def _traced_repeat(prefill, rec, on_gpu: bool, trace_dir: str) -> tuple[dict, str]:
    """One prefill under torch.profiler; its own range times are kept to check the trace against.
    The raw trace is finished later, once the telemetry that covers it has stopped."""
    from profiler.capture import profiled_call

    raw = os.path.join(trace_dir, ".trace.raw.json")
    try:
        ns, keep, _mark = profiled_call(prefill, on_gpu, raw)
    except BaseException:
        if os.path.exists(raw):
            os.remove(raw)
        raise
    del keep
    times = rec.take()
    return {"profiled_ttft_ns": ns, "profiled_component_ns": _rows(times, 0), "trace_file": "trace.json.gz"}, raw


def _finish_trace(raw: str, trace_dir: str, profiled_ns: int, telemetry_rows: list[dict]) -> None:
    from analyzers.trace.export import finalize_trace

    try:
        finalize_trace(raw, os.path.join(trace_dir, "trace.json.gz"), counters=telemetry_rows,
                       metadata={"profiled_ttft_ns": profiled_ns, "producer": "ttft-profile"})
    finally:
        if os.path.exists(raw):
            os.remove(raw)
