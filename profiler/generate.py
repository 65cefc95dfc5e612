"""TTFT as a user's own `generate()` call experiences it, split into prefill and decode.

`profile_prefill` times a prefill we drive ourselves; a serving stack or a script
calls `model.generate(...)`, which adds its own host work (input preparation,
logits processors, stopping criteria, cache set-up). Here the clock starts on
entering `generate` and stops when the first new token id reaches the host: a
streamer (`put()` gets the prompt first, then each new token, already copied to
the host) is put in front of the user's own, and the device is synchronised
before the clock is read. At that moment, outside every model forward (so no
range is open and `take()` may run), the recorder's totals are taken: they are
the prefill's ranges alone, a `Run` whose rows sum to that TTFT (`other` holds
generate's own host work). What follows, up to the last token, is decode,
reported per output token.
"""
from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from analyzers.errors import InputError
from analyzers.run import Run
from analyzers.vocabulary import RangeKey
from profiler.instrumentation import instrument
from profiler.measure import range_rows
from profiler.prefill import model_device_dtype

H2D = RangeKey("h2d")


@dataclass
class GenerateRun:
    """Prefill (a `Run`: `compute_tables` renders it) and decode of timed `generate()` calls, one entry per call."""

    prefill: Run  # ttft_ns: entering generate -> first new token id on the host; rows: ranges in that span
    new_tokens: list[int] = field(default_factory=list)  # generation steps per call (tokens per sequence)
    decode_ns: list[int] = field(default_factory=list)  # after the first token -> the last token on the host
    generate_ns: list[int] = field(default_factory=list)  # the whole call, entry to return
    decode_component_ns: list[dict] = field(default_factory=list)  # ranges after the first token, rows as Run's

    @property
    def decode_ns_per_token(self) -> list[float | None]:
        """Decode time per output token after the first, per call; None where only one token was generated."""
        return [ns / (n - 1) if n > 1 else None for ns, n in zip(self.decode_ns, self.new_tokens, strict=True)]

    def decode_row(self) -> dict:
        """The bonus row beside the prefill breakdown: median decode ms per output token over the calls."""
        per = [x for x in self.decode_ns_per_token if x is not None]
        return {"component": "decode", "ms_per_token": statistics.median(per) / 1e6 if per else None,
                "tokens": statistics.median(self.new_tokens) if self.new_tokens else 0, "calls": len(per)}

    def __repr__(self) -> str:
        row = self.decode_row()
        decode = f"{row['ms_per_token']:.3f} ms per output token" if row["ms_per_token"] else "no decode step"
        from analyzers.render.notebook import run_summary

        return f"GenerateRun({run_summary(self.prefill)}; decode {decode})"

    def _repr_html_(self) -> str:
        from analyzers.render.notebook import run_html

        row = self.decode_row()
        decode = f"{row['ms_per_token']:.3f} ms" if row["ms_per_token"] else "none (one token)"
        return run_html(self.prefill) + f"<p>decode per output token: {decode} over {row['calls']} call(s)</p>"


class _TokenClock:
    """The streamer put in front of the user's: stamps the first new token and the last, forwards everything."""

    def __init__(self, watch: GenerateWatch, inner) -> None:
        self.watch, self.inner = watch, inner
        self.puts = 0
        self.first = self.decode_start = self.last = None
        self.rows: dict = {}
        self.host_rows: dict = {}

    def put(self, value) -> None:
        self.puts += 1
        if self.puts == 2:  # the first new token (put 1 is the prompt); no model range is open here
            self.watch.sync()
            self.first = time.perf_counter_ns()
            rec = self.watch.recorder
            self.rows, self.host_rows = rec.take(), rec.take_host()
            self.decode_start = time.perf_counter_ns()  # the take's own cost is neither prefill nor decode
        elif self.puts > 2:
            self.watch.sync()
            self.last = time.perf_counter_ns()
        if self.inner is not None:
            self.inner.put(value)

    def end(self) -> None:
        if self.inner is not None:
            self.inner.end()


class GenerateWatch:
    """Times every `generate()` call made through it; `result` is the `GenerateRun` of the calls so far."""

    def __init__(self, model, recorder, skip: int = 0) -> None:
        from profiler.recorders import default_recorder

        self.model = model
        self.device = model_device_dtype(model)[0]
        self.recorder = recorder if recorder is not None else default_recorder(self.device)
        self.skip = skip  # the first calls are warmup: timed but not kept
        self.components: set[str] = set()
        self.calls: list[tuple] = []  # (ttft_ns, rows, host_rows, steps, decode_ns, generate_ns, decode_rows)
        self.prompt: tuple[int, int] = (0, 0)
        if self.device.startswith("cuda"):
            import torch

            self.sync = functools.partial(torch.cuda.synchronize, self.device)
        else:
            self.sync = _no_sync

    def timed(self, call: Callable, prompt_shape: tuple[int, int] | None):
        """Run `call(streamer)` (one generate) under the clock; the device is idle at both ends."""
        self.sync()
        self.recorder.take()  # whatever ran between calls is neither this call's prefill nor its decode
        self.recorder.take_host()
        clock = _TokenClock(self, None)
        start = time.perf_counter_ns()
        try:
            out = call(clock)
        except BaseException:
            self.recorder.unwind()  # a caller who catches this and calls again inside the block starts clean
            raise
        self.sync()
        end = time.perf_counter_ns()
        if clock.first is None:
            raise InputError("generate() produced no new token through its streamer, so there is no first token "
                             "to time; ask for max_new_tokens >= 1 and do not replace the streamer.")
        if prompt_shape is not None:
            self.prompt = prompt_shape
        steps = clock.puts - 1
        decode = (clock.last - clock.decode_start) if clock.last is not None else 0
        self.calls.append((clock.first - start, clock.rows, clock.host_rows, steps, decode, end - start,
                           self.recorder.take()))
        return out

    @property
    def result(self) -> GenerateRun:
        """The calls after the warmup ones, as a GenerateRun (its prefill a Run)."""
        kept = self.calls[self.skip:]
        if not kept:
            raise InputError("no generate() call was timed: call model.generate(...) inside the block.")
        rows, host_rows, decode_rows = [], [], []
        for i, (_ttft, r, h, _n, _d, _g, dr) in enumerate(kept):
            rows.extend(range_rows(r, i))
            host_rows.extend(range_rows(h, i))
            decode_rows.extend(range_rows(dr, i))
        prefill = _prefill_run(self, [c[0] for c in kept], rows, host_rows)
        return GenerateRun(prefill=prefill, new_tokens=[c[3] for c in kept], decode_ns=[c[4] for c in kept],
                           generate_ns=[c[5] for c in kept], decode_component_ns=decode_rows)


def _no_sync() -> None:
    return None


def _prefill_run(watch: GenerateWatch, ttft: list[int], rows: list[dict], host_rows: list[dict]) -> Run:
    """A Run for the spans entering generate -> first token: the breakdown of what the user waited for."""
    import torch
    import transformers

    from profiler.device import describe
    from profiler.version import __version__

    model = watch.model
    config = getattr(model, "config", None)
    built = int(getattr(config, "num_hidden_layers", 0) or 0)
    batch, seq_len = watch.prompt
    return Run(
        model=getattr(config, "_name_or_path", "") or type(model).__name__, seq_len=seq_len, batch=batch,
        dtype=model_device_dtype(model)[1], device=watch.device, device_name=describe(watch.device).name,
        attn=str(getattr(config, "_attn_implementation", "unknown")), warmup=watch.skip, repeat=len(ttft),
        ttft_ns=ttft, cold_ttft_ns=int(watch.calls[0][0]), component_ns=rows,
        components_present=sorted(watch.components), model_source="in-memory", model_origin=type(model).__name__,
        random_weights=False, layers_built=built, layers_total=built, logits_kept="generate",
        sampling={"method": "generate"}, timing=watch.recorder.timing,
        config=config.to_dict() if hasattr(config, "to_dict") else {},
        versions={"ttft_profile": __version__, "torch": torch.__version__, "transformers": transformers.__version__},
        command=["generate"], host_component_ns=host_rows,
        notices=["TTFT of generate(): from entering generate to the first new token id on the host; `other` "
                 "holds generate's own host work (input preparation, logits processors, stopping criteria)."])


@contextmanager
def watch_generate(model, recorder=None) -> Iterator[GenerateWatch]:
    """`with watch_generate(model) as watch: model.generate(...)`, then `watch.result`.

    Inside the block `model.generate` is a wrapper (on the instance, not the class) that times each
    call and chains its own streamer in front of the caller's; on exit, even after an exception,
    the wrapper goes and `instrument` takes every hook and patch off.
    """
    watch = GenerateWatch(model, recorder)
    own = model.__dict__.get("generate")
    original = model.generate

    @functools.wraps(original)
    def generate(*args, **kwargs):
        inner = kwargs.pop("streamer", None)
        ids = args[0] if args else kwargs.get("input_ids", kwargs.get("inputs"))
        shape = tuple(ids.shape[:2]) if getattr(ids, "ndim", 0) == 2 else None

        def call(clock):
            clock.inner = inner
            return original(*args, streamer=clock, **kwargs)

        return watch.timed(call, shape)

    with instrument(model, watch.recorder) as info:
        watch.components = info.components
        model.generate = generate
        try:
            yield watch
        finally:
            if own is None:
                del model.generate
            else:
                model.generate = own


def profile_generate(model, inputs, *, repeat: int = 5, warmup: int = 1, recorder=None,
                     **generate_kwargs) -> GenerateRun:
    """Time `warmup + repeat` calls of `model.generate(inputs, **generate_kwargs)`; keep the last `repeat`.

    `inputs` is a [batch, n] tensor of token ids or a mapping (a tokenizer's output); tensors not on
    the model's device are moved there inside the clock (an `h2d` range), as `profile_prefill` does.
    """
    import torch

    if any(isinstance(v, bool) or not isinstance(v, int) for v in (repeat, warmup)) or repeat < 1 or warmup < 0:
        raise InputError(f"profile_generate() needs repeat >= 1 and warmup >= 0, not repeat={repeat}, "
                         f"warmup={warmup}.")
    if "streamer" in generate_kwargs and generate_kwargs["streamer"] is None:
        generate_kwargs.pop("streamer")
    named = dict(inputs) if isinstance(inputs, Mapping) else {"input_ids": inputs}
    ids = named.get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
        raise InputError("profile_generate() needs inputs to be a [batch, n] tensor of token ids or a mapping "
                         "with input_ids.")
    watch = GenerateWatch(model, recorder, skip=warmup)
    inner = generate_kwargs.pop("streamer", None)

    def call(clock):
        clock.inner = inner
        watch.recorder.push(H2D)
        moved = {k: v.to(watch.device) if isinstance(v, torch.Tensor) else v for k, v in named.items()}
        watch.recorder.pop()
        return model.generate(**moved, streamer=clock, **generate_kwargs)

    with instrument(model, watch.recorder) as info:
        watch.components = info.components | {"h2d"}
        for _ in range(warmup + repeat):
            watch.timed(call, tuple(ids.shape))
    return watch.result
