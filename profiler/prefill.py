"""One timed TTFT: token ids on the host to the first sampled id back on the host.

The device is synchronised at both ends, sampling and both copies sit inside
the clock, and logits are computed for the last position only when the model
allows it (as serving engines and `generate()` do).

A chunked prefill (`chunk` C) runs ceil(n/C) forwards of C tokens through one
KV cache, as serving engines do; a mark at each chunk's end splits the TTFT
into per-chunk times that add up to it (chunk 0 includes the copy to the
device, the last chunk sampling and the copy back).
"""
from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass, field
from typing import Callable

from analyzers.errors import InputError
from analyzers.vocabulary import RangeKey

H2D, SAMPLING, D2H = RangeKey("h2d"), RangeKey("sampling"), RangeKey("d2h")


class HostMarks:
    """Phase edges on the host clock: the truth where the host does the work (CPU)."""

    def start(self) -> int:
        self.t0 = time.perf_counter_ns()
        self.edges: list[int] = []
        return self.t0

    def mark(self) -> None:
        self.edges.append(time.perf_counter_ns())

    def read(self) -> list[int]:
        return self.edges


class DeviceMarks(HostMarks):
    """Phase edges where the device reaches them: a host clock read after launching the forward
    would mark its launch, not its end. Events are read after the closing synchronisation and
    placed on the host clock from the start, when host and device were synchronised."""

    def __init__(self, chunks: int = 1):
        import torch

        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(3 + chunks)]

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


def model_device_dtype(model) -> tuple[str, str]:
    """Where the model's weights are and in what dtype: nothing is moved or cast."""
    param = next(model.parameters())
    device = str(param.device)
    if device == "cuda":
        device = "cuda:0"
    return device, str(param.dtype).replace("torch.", "")


def accepts_logits_to_keep(model) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def cache_argument(model) -> str | None:
    """The keyword the model's forward takes a KV cache by (`cache` from transformers 5.2x on,
    `past_key_values` before), or None when it takes none: such a model cannot be chunked."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def cache_refusal(model, why: str) -> InputError:
    return InputError(f"{type(model).__name__} cannot extend a KV cache ({why}), so it cannot run a chunked "
                      "prefill; profile it without `chunk`.")


@dataclass
class PrefillCall:
    """Everything one prefill needs, fixed for the whole session."""

    model: object
    ids_host: object  # [b, n] token ids on the host
    device: str
    recorder: object  # profiler.recorders.Recorder
    sample: Callable  # logits [b, V] -> token ids [b]
    sync: Callable[[], None]
    forward_kwargs: dict
    marks: HostMarks
    chunk: int | None = None  # tokens per forward; None: one forward over the whole prompt
    cache_arg: str = "past_key_values"
    make_cache: Callable | None = None  # a fresh, empty KV cache for each chunked prefill
    split: bool = False  # take the recorder's times at each chunk's end (host clock: no synchronisation needed)
    chunk_edges: list = field(default_factory=list)  # the last call's inner chunk ends, perf ns
    chunk_times: list = field(default_factory=list)  # the last call's recorder times per chunk but the last
    checked: bool = False  # the cache was seen to grow once

    def __call__(self) -> tuple[int, object, tuple[int, ...]]:
        """One timed TTFT; returns (ns, outputs, phase marks). Outputs stay alive until after the
        clock stops, as a server keeps the KV cache: freeing it is not part of TTFT. The marks
        (perf_ns at the phase edges) place telemetry samples in a phase."""
        rec, marks = self.recorder, self.marks
        self.sync()
        start = marks.start()
        rec.push(H2D)
        ids = self.ids_host.to(self.device)
        rec.pop()
        marks.mark()
        outputs = self._forward(ids)
        marks.mark()
        rec.push(SAMPLING)
        token = self.sample(outputs.logits[:, -1, :])
        rec.pop()
        marks.mark()
        rec.push(D2H)
        token_host = token.to("cpu")  # blocks until the device is done
        rec.pop()
        self.sync()
        end = time.perf_counter_ns()
        edges = marks.read()
        self.chunk_edges = edges[1:-2]
        return end - start, (outputs, token_host), (start, edges[0], edges[-2], edges[-1], end)

    def _forward(self, ids):
        """The prefill's forward: one call, or one per chunk through a cache carried across them."""
        if self.chunk is None:
            return self.model(input_ids=ids, use_cache=True, **self.forward_kwargs)
        self.chunk_times = []
        cache, n, step = self.make_cache(), ids.shape[1], self.chunk
        for begin in range(0, n, step):
            outputs = self.model(input_ids=ids[:, begin:begin + step], use_cache=True,
                                 **{self.cache_arg: cache}, **self.forward_kwargs)
            if not self.checked:
                self._check_cache(cache, min(begin + step, n))
            if begin + step < n:
                self.marks.mark()
                if self.split:
                    self.chunk_times.append(self.recorder.take())
        return outputs

    def chunk_ns(self, mark: tuple) -> list[int]:
        """ns per chunk of the last call, from its phase marks and chunk ends: chunk 0 from the clock's start
        (the copy in included), the last to its stop (sampling and the copy out included), so they sum to it."""
        edges = [mark[0], *self.chunk_edges, mark[-1]]
        return [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def take_times(self) -> tuple[dict, list[dict]]:
        """The recorder's {RangeKey: (ns, calls)} of the last call, whole, and per chunk where it was split at
        chunk ends (host clock); the whole is the sum of the chunks'."""
        last = self.recorder.take()
        if not (self.chunk is not None and self.split):
            return last, []
        per_chunk = [*self.chunk_times, last]
        merged: dict = {}
        for times in per_chunk:
            for key, (ns, calls) in times.items():
                had = merged.get(key, (0, 0))
                merged[key] = (had[0] + ns, had[1] + calls)
        return merged, per_chunk

    def _check_cache(self, cache, expected: int) -> None:
        """A forward that takes a cache but does not extend it would score each chunk alone: refuse it."""
        held = cache.get_seq_length()
        if held != expected:
            raise cache_refusal(self.model, f"after {expected} tokens its cache holds {held}")
        if expected > self.chunk:
            self.checked = True


def make_chunked(call: PrefillCall, chunk: int) -> None:
    """Make `call` a chunked prefill, or refuse a model whose forward takes no KV cache (before anything runs)."""
    from transformers import DynamicCache

    from analyzers.vocabulary import HOST_TIMING

    call.cache_arg = cache_argument(call.model)
    if call.cache_arg is None:
        raise cache_refusal(call.model, "its forward takes no `cache` or `past_key_values`")
    config = getattr(call.model, "config", None)
    call.chunk, call.make_cache = chunk, functools.partial(DynamicCache, config=config)
    call.split = call.recorder.timing == HOST_TIMING  # a device-clock take() would synchronise between chunks


def chunk_tokens(seq_len: int, chunk: int | None) -> list[int]:
    """Tokens per forward of a chunked prefill: C per chunk, the rest in the last; empty unchunked."""
    if chunk is None:
        return []
    return [min(chunk, seq_len - start) for start in range(0, seq_len, chunk)]


def unchunked_notice(chunk: int | None, seq_len: int) -> str | None:
    """The notice for a chunk no smaller than the prompt, which runs as one forward; None otherwise."""
    if chunk is None or chunk < seq_len:
        return None
    return (f"note: chunk {chunk} is not below the prompt's {seq_len} tokens, so the prefill ran unchunked "
            "(one forward).")


def pad_tokens(pad_fraction: float, seq_len: int) -> int:
    """Padded positions of each prompt (on the left), from `pad_fraction`."""
    return round(pad_fraction * seq_len)


def random_prompt(vocab: int, batch: int, seq_len: int, seed: int):
    """The prompt every profile of `seed` uses (on the host): one definition, so a tensor-parallel rank's
    reference logits and a test's single-process run see the very ids the timed prefill saw."""
    import torch

    return torch.randint(0, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(seed))
