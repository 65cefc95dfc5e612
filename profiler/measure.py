"""Time warm prefills end to end and return a `Run`.

TTFT here is what a user waits for: token ids on the host -> transfer ->
prefill forward (logits for the last position only) -> sampling -> the
first token id back on the host, with the device synchronised at both ends
(`profiler.prefill`). The timed repeats never run under torch.profiler; one
more prefill does, for the picture.
"""
from __future__ import annotations

import datetime as _dt
import functools
import numbers
import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Callable

from analyzers.component_names import check_rules
from analyzers.errors import InputError, ParameterError
from analyzers.run import Run
from analyzers.vocabulary import PREFILL_RANGES
from profiler.collectives import align_ranks, world
from profiler.errors import first_line, is_oom
from profiler.instrumentation import instrument
from profiler.prefill import (
    DeviceMarks,
    HostMarks,
    PrefillCall,
    accepts_logits_to_keep,
    chunk_tokens,
    make_chunked,
    model_device_dtype,
    pad_tokens,
    random_prompt,
    unchunked_notice,
)
from profiler.sampling import Sampling

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class Timing:
    """How to time a prefill: the keyword options of `profile_prefill`, checked once."""

    seq_len: int = 2048
    batch: int = 1
    warmup: int = 2
    repeat: int = 7
    sampling: Sampling = field(default_factory=Sampling)
    seed: int = 0
    telemetry_interval_ms: float | None = 10.0
    vocab_size: int | None = None  # for a model whose config has none
    # {fnmatch pattern on a qualified module name: component}, tried before the built-in rules
    component_rules: tuple[tuple[str, str], ...] | dict | None = None
    chunk: int | None = None  # chunked prefill: this many tokens per forward through the KV cache
    # left padding: this share of each prompt's positions masked out, as a batch of unequal prompts
    # padded to the longest has (the attention mask is passed; lint's padding-waste reads it)
    pad_fraction: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "component_rules", check_rules(self.component_rules))
        if not 0 <= self.pad_fraction < 1:
            raise ParameterError("pad_fraction", self.pad_fraction, "is outside [0, 1)",
                                 "pass the share of positions that are padding, e.g. 0.25")
        if self.pad_fraction and self.chunk is not None:
            raise ParameterError("pad_fraction", self.pad_fraction, "cannot be combined with chunk",
                                 "profile padding and chunking separately")
        if self.chunk is not None and self.chunk < 1:
            raise ParameterError("chunk", self.chunk, "must be at least 1", "pass the tokens per chunk, e.g. 512")
        for name, low in (("seq_len", 1), ("batch", 1), ("repeat", 1), ("warmup", 0)):
            value = getattr(self, name)
            if value < low:
                raise ParameterError(name, value, "is negative" if low == 0 else f"must be at least {low}",
                                     "use 5 or more for a stable p50" if name == "repeat" else "")


@dataclass(frozen=True)
class ModelOrigin:
    """What the model object cannot tell about itself: its name, where it came from, the session around it."""

    name: str
    source: str = "in-memory"
    origin: str = ""
    random_weights: bool = False
    layers_total: int | None = None  # the full model's layers when only some were built
    config: dict | None = None  # the full model's config (the built one may be truncated)
    notices: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    ceilings: dict | None = None


@dataclass
class Measured:
    """What the timed repeats produced."""

    samples: list[int] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    marks: list[tuple] = field(default_factory=list)
    spans: list[list] = field(default_factory=list)
    cold_ns: int | None = None
    traced: dict = field(default_factory=dict)
    raw_trace: str | None = None
    host_rows: list[dict] = field(default_factory=list)  # host ns per range (device-clock recorders)
    recorder_stats: list[dict] = field(default_factory=list)  # per measured repeat: events, device wait
    notices: list[str] = field(default_factory=list)
    trace_meta: dict = field(default_factory=dict)
    contention: dict | None = None  # profiler.contention over the measured repeats
    chunk_ns: list[list[int]] = field(default_factory=list)  # per measured repeat, ns per chunk (chunked prefill)
    chunk_rows: list[dict] = field(default_factory=list)  # component_ns rows with a `chunk` key (host clock only)


def profile_prefill(model, seq_len: int = 2048, *, trace_dir: str | None = None, recorder=None,
                    progress: Progress | None = None, origin: ModelOrigin | None = None, **options) -> Run:
    """Profile the prefill of a causal LM already in memory and return a `Run`.

    `options` are the fields of `Timing` (batch, warmup, repeat, sampling, seed,
    telemetry_interval_ms, vocab_size, component_rules, chunk). With `chunk` C the prefill runs as
    ceil(n/C) forwards through one KV cache; C >= n runs unchunked and says so. With `trace_dir`, one more prefill runs
    under torch.profiler after the timed ones and `trace.json.gz` is written
    there. Telemetry (NVML on a GPU, process CPU and memory on a CPU) is sampled
    from before the warmup to after the last prefill; `telemetry_interval_ms=None`
    switches it off. `origin` says what the model cannot (its name, the full
    model's layers when only some were built). `component_rules` ({"model.layers.*.mixer":
    "attention"}: fnmatch patterns on qualified module names) name modules the built-in rules miss.
    """
    import torch

    from profiler.device import device_context
    from profiler.recorders import default_recorder
    from profiler.telemetry import start_sampler

    _check_arguments(model, seq_len, options)
    timing = Timing(seq_len=seq_len, **options)
    call = _prepare(model, timing, recorder or default_recorder(model_device_dtype(model)[0]))
    unchunked = _unchunked_notice(timing)
    if trace_dir is not None:
        os.makedirs(trace_dir, exist_ok=True)  # fail now, not after every prefill has run
    sampler = start_sampler(call.device, timing.telemetry_interval_ms)
    try:
        instrumented = instrument(model, call.recorder, timing.component_rules)
        with device_context(call.device), torch.inference_mode(), instrumented as info:
            measured = _timed_repeats(call, timing, progress, sampler.wants_spans and call.recorder.host_spans)
            if trace_dir is not None:
                _traced_repeat(call, trace_dir, measured)
                if progress is not None:
                    progress("trace", timing.warmup + timing.repeat + 1, timing.warmup + timing.repeat + 1)
    finally:
        sampler.stop()
    if unchunked is not None:  # printed before the prefills ran
        measured.notices.append(unchunked)
    wanted = sampler.wants_spans and call.recorder.host_spans
    telemetry, rows = sampler.summary(measured.marks, measured.spans if wanted else None), sampler.samples()
    if measured.raw_trace is not None:
        _finish_trace(measured.raw_trace, trace_dir, measured.trace_meta, rows)
    return _run(model, call, timing, measured, sorted(info.components | set(PREFILL_RANGES)), origin,
                telemetry=telemetry, telemetry_samples=rows)


_INT_OPTIONS = ("batch", "warmup", "repeat", "seed", "vocab_size", "chunk")


def _check_arguments(model, seq_len, options: dict) -> None:
    """Wrong types fail first, in one sentence naming the argument, not deep inside torch."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"profile_prefill() needs model to be a torch.nn.Module, not {type(model).__name__}.")
    if next(model.parameters(), None) is None:
        raise InputError(f"model ({type(model).__name__}) has no parameters, so it has no device or dtype to "
                         "profile; pass a causal LM with its weights loaded.")
    unknown = sorted(set(options) - {f for f in Timing.__dataclass_fields__ if f != "seq_len"})
    if unknown:
        raise TypeError(f"profile_prefill() got unknown option {unknown[0]!r}; the options are the fields of Timing.")
    for name, value in (("seq_len", seq_len), *((n, options[n]) for n in _INT_OPTIONS if n in options)):
        if value is None and name in ("vocab_size", "chunk"):
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"profile_prefill() needs {name} to be an int, not {type(value).__name__} {value!r}.")
    if "sampling" in options and not isinstance(options["sampling"], Sampling):
        raise TypeError(f"profile_prefill() needs sampling to be a Sampling, not {type(options['sampling']).__name__}.")
    interval = options.get("telemetry_interval_ms")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, numbers.Real)):
        raise TypeError(f"profile_prefill() needs telemetry_interval_ms to be a number or None, "
                        f"not {type(interval).__name__}.")


def _prepare(model, timing: Timing, recorder) -> PrefillCall:
    """The random prompt, the sampler and the synchronisation for this model's device."""
    import torch

    device, _dtype = model_device_dtype(model)
    config = getattr(model, "config", None)
    vocab = int(timing.vocab_size or getattr(config, "vocab_size", 0) or 0)
    if vocab < 1:
        raise InputError("the model has no config.vocab_size; pass vocab_size= so the random prompt's ids fit it.")
    ids_host = random_prompt(vocab, timing.batch, timing.seq_len, timing.seed)
    on_gpu = device.startswith("cuda")
    kwargs = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
    pad = pad_tokens(timing.pad_fraction, timing.seq_len)
    if pad:
        mask = torch.ones_like(ids_host)
        mask[:, :pad] = 0  # left padding, as a batch of shorter prompts is padded for generation
        kwargs["attention_mask"] = mask.to(device)
    chunk = timing.chunk if timing.chunk is not None and timing.chunk < timing.seq_len else None
    chunks = -(-timing.seq_len // chunk) if chunk else 1
    call = PrefillCall(model, ids_host, device, recorder, timing.sampling.make(device),
                       functools.partial(torch.cuda.synchronize, device) if on_gpu else _no_sync, kwargs,
                       DeviceMarks(chunks) if on_gpu else HostMarks())
    if chunk is not None:
        make_chunked(call, chunk)
    return call


def _unchunked_notice(timing: Timing) -> str | None:
    """A chunk no smaller than the prompt is one forward: said (now, on stderr), not refused."""
    note = unchunked_notice(timing.chunk, timing.seq_len)
    if note is not None:
        print(note, file=sys.stderr)
    return note


def _no_sync() -> None:
    return None


def _once(call: PrefillCall):
    align_ranks(call.sync)  # tensor-parallel ranks start each prefill together (nothing without a world)
    try:
        return call()
    except Exception as exc:
        if is_oom(exc):
            raise MemoryError(first_line(exc, "out of memory")) from None
        raise


def _timed_repeats(call: PrefillCall, timing: Timing, progress: Progress | None, log_spans: bool) -> Measured:
    """Warmup, then the measured repeats; per repeat its exclusive time per range (and host spans if asked)."""
    import profiler.contention as contention

    out, rec = Measured(), call.recorder
    total = timing.warmup + timing.repeat
    for step in range(total):
        measured = step >= timing.warmup
        if step == timing.warmup:
            before = contention.read()  # the OS counters, read outside any timed prefill
        rec.spans = [] if log_spans else None
        ns, keep, mark = _once(call)
        del keep
        times, per_chunk = call.take_times()  # whole, and per chunk where split
        if out.cold_ns is None:
            out.cold_ns = ns
        if measured:
            if call.chunk is not None:
                _chunk_record(out, call, mark, per_chunk)
            out.rows.extend(range_rows(times, len(out.samples)))
            out.host_rows.extend(range_rows(rec.take_host(), len(out.samples)))
            out.recorder_stats.append(rec.stats())
            out.samples.append(ns)
            out.marks.append(mark)
            if log_spans:
                out.spans.append(sorted(((k.component, a, b, d) for k, a, b, d in rec.spans), key=lambda s: s[1]))
        if progress is not None:
            progress("repeat" if measured else "warmup", step + 1, total)
    out.contention = contention.contention(before, contention.read())
    rec.spans = None
    return out


def _chunk_record(out: Measured, call: PrefillCall, mark: tuple, per_chunk: list[dict]) -> None:
    """ns per chunk (`PrefillCall.chunk_ns`), and each chunk's component rows where the recorder was split."""
    repeat = len(out.samples)
    out.chunk_ns.append(call.chunk_ns(mark))
    for index, times in enumerate(per_chunk):
        out.chunk_rows.extend({**row, "chunk": index} for row in range_rows(times, repeat))


def range_rows(times: dict, repeat: int) -> list[dict]:
    """The Run's component_ns rows from a recorder's {RangeKey: (exclusive_ns, calls)}."""
    return [{"repeat": repeat, "component": key.component, "layer": key.layer, "detail": key.detail,
             "ns": ns, "calls": calls} for key, (ns, calls) in times.items()]


def _traced_repeat(call: PrefillCall, trace_dir: str, out: Measured) -> None:
    """One prefill under torch.profiler; its own range times are kept to check the trace against.
    The raw trace is finished later, once the telemetry that covers it has stopped. A GPU trace
    without kernels (a profiling tool holds CUPTI) is said, before and after, never passed off."""
    import time

    from profiler.capture import empty_device_notice, profiled_call, tool_notice

    raw = os.path.join(trace_dir, ".trace.raw.json")
    _say(out, tool_notice(call.device, nvtx_only=False))
    try:
        ns, keep, mark = profiled_call(lambda: _once(call), call.device, raw)
        _say(out, empty_device_notice(call.device, raw))
    except BaseException:
        if os.path.exists(raw):
            os.remove(raw)
        raise
    wall_minus_perf = time.time_ns() - time.perf_counter_ns()
    del keep
    chunked = getattr(call, "chunk", None) is not None  # a chunked call's times may be split at chunk ends
    times = call.take_times()[0] if chunked else call.recorder.take()
    out.traced = {"profiled_ttft_ns": ns, "profiled_component_ns": range_rows(times, 0),
                  "trace_file": "trace.json.gz"}
    # The phase edges of the traced prefill on the trace's clock (wall ns); on a GPU they are CUDA
    # events, so a phase track drawn from them sits where the device ran, not where the host launched.
    out.trace_meta = {"profiled_ttft_ns": ns, "producer": "ttft-profile", "device": call.device,
                      "phase_clock": call.recorder.timing, "phase_marks_unix_ns": [m + wall_minus_perf for m in mark]}
    out.raw_trace = raw


def _say(out: Measured, notice: str | None) -> None:
    """A warning the run keeps, printed once on stderr as it happens."""
    if notice is not None and notice not in out.notices:
        print(notice, file=sys.stderr)
        out.notices.append(notice)


def _finish_trace(raw: str, trace_dir: str, metadata: dict, telemetry_rows: list[dict]) -> None:
    from analyzers.trace.export import finalize_trace

    try:
        finalize_trace(raw, os.path.join(trace_dir, "trace.json.gz"), counters=telemetry_rows, metadata=metadata)
    finally:
        if os.path.exists(raw):
            os.remove(raw)


def _versions() -> dict:
    import torch
    import transformers

    from profiler.version import __version__

    return {"ttft_profile": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "cuda": torch.version.cuda, "platform": platform.platform()}


def _run(model, call: PrefillCall, timing: Timing, measured: Measured, present: list[str],
         origin: ModelOrigin | None, **telemetry) -> Run:
    """The Run: what was measured, what the model says of itself, and what `origin` adds."""
    from profiler.device import describe

    config = getattr(model, "config", None)
    built = int(getattr(config, "num_hidden_layers", 0) or 0)
    origin = origin or ModelOrigin(name=getattr(config, "_name_or_path", "") or type(model).__name__,
                                   origin=type(model).__name__)
    run = Run(
        model=origin.name, seq_len=timing.seq_len, batch=timing.batch, dtype=model_device_dtype(model)[1],
        device=call.device, device_name=describe(call.device).name,
        attn=str(getattr(config, "_attn_implementation", "unknown")), warmup=timing.warmup, repeat=timing.repeat,
        ttft_ns=measured.samples, cold_ttft_ns=int(measured.cold_ns), component_ns=measured.rows,
        components_present=present, model_source=origin.source, model_origin=origin.origin,
        random_weights=origin.random_weights, layers_built=built, layers_total=origin.layers_total or built,
        tp=(world() or (0, 1))[1], logits_kept="last" if "logits_to_keep" in call.forward_kwargs else "all",
        padding={"pad_tokens": pad_tokens(timing.pad_fraction, timing.seq_len) * timing.batch, "tokens": timing.batch * timing.seq_len}
        if timing.pad_fraction else {}, sampling=timing.sampling.describe(),
        timing=call.recorder.timing,
        config=origin.config if origin.config is not None else (config.to_dict() if hasattr(config, "to_dict") else {}),
        versions=_versions(), command=list(origin.command) or list(sys.argv),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        notices=list(origin.notices), ceilings=origin.ceilings, contention=measured.contention,
        chunk=call.chunk, chunk_ns=measured.chunk_ns, chunk_component_ns=measured.chunk_rows,
        chunk_tokens=chunk_tokens(timing.seq_len, call.chunk),
        **measured.traced, **_device_fields(call, measured), **telemetry)
    run.notices.extend(n for n in _device_notices(run, call, measured) if n not in run.notices)
    return run


def _device_fields(call: PrefillCall, measured: Measured) -> dict:
    """What a run records beside its times: precision switches, the device's top clocks, the recorder's own cost."""
    from profiler.device import precision_settings
    from profiler.telemetry import nvml_target
    from profiler.telemetry.nvml import max_clocks_mhz

    stats = [s for s in measured.recorder_stats if s]
    recorder = {}
    if stats:
        recorder = {"edges_per_prefill": stats[-1]["boundaries"], "events_per_prefill": stats[-1]["events"],
                    "share_within_ns": stats[-1]["share_within_ns"],
                    "device_wait_ns": [s.get("device_wait_ns", 0) for s in stats]}
    clocks = max_clocks_mhz(nvml_target(call.device)) if call.device.startswith("cuda") else {}
    return {"precision": precision_settings(), "max_clocks_mhz": clocks, "host_component_ns": measured.host_rows,
            "recorder_stats": recorder}


def _device_notices(run: Run, call: PrefillCall, measured: Measured) -> list[str]:
    """The run's caveats found while measuring: precision, emitters, an empty GPU trace."""
    from profiler.device import precision_notice

    found = [precision_notice(run.precision, run.dtype, run.device), *call.recorder.notices, *measured.notices]
    return [n for n in found if n]
