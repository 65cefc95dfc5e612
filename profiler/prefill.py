"""One timed TTFT: token ids on the host to the first sampled id back on the host.

The device is synchronised at both ends, sampling and both copies sit inside
the clock, and logits are computed for the last position only when the model
allows it (as serving engines and `generate()` do).
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Callable

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
        outputs = self.model(input_ids=ids, use_cache=True, **self.forward_kwargs)
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
        h2d_end, forward_end, sampling_end = marks.read()
        return end - start, (outputs, token_host), (start, h2d_end, forward_end, sampling_end, end)
