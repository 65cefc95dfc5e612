"""Overhead of the instrumentation on TTFT: plain model vs ranges on (torch.profiler off).

Both are timed in one process on the same model and prompt, alternating in
ABBA order so drift (thermal, other load) hits both equally. Prints the ratio
of median TTFTs; the target is at most 1.01.

    .venv/bin/python benchmarks/overhead.py [--model tiny-qwen3] [--len 2048] [--pairs 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen3")
    parser.add_argument("--len", dest="seq_len", type=int, default=2048)
    parser.add_argument("--pairs", type=int, default=80)  # fewer drown a 0.1% effect in noise
    args = parser.parse_args()

    import torch

    from profiler.build import build
    from profiler.catalog import resolve
    from profiler.instrumentation import instrument
    from profiler.prefill import HostMarks, PrefillCall
    from profiler.recorders import NullRecorder
    from profiler.recorders.host import RangeRecorder
    from profiler.sampling import Sampling

    model = build(resolve(args.model), None, "float32", "cpu", "sdpa")
    ids = torch.randint(0, model.config.vocab_size, (1, args.seq_len), generator=torch.Generator().manual_seed(0))
    sample = Sampling().make("cpu")

    def no_sync() -> None:
        return None

    # The plain path: same TTFT code, ranges that do nothing (NullRecorder), no hooks on the model.
    plain_call = PrefillCall(model, ids, "cpu", NullRecorder(), sample, no_sync, {"logits_to_keep": 1}, HostMarks())

    def plain() -> int:
        return plain_call()[0]

    recorder = RangeRecorder()  # NVTX + record_function on, as in a real run
    instrumented_call = PrefillCall(model, ids, "cpu", recorder, sample, no_sync, {"logits_to_keep": 1}, HostMarks())

    def instrumented() -> int:
        with instrument(model, recorder):
            ns = instrumented_call()[0]
        ranges = sum(calls for _ns, calls in recorder.take().values())
        instrumented.ranges = ranges
        return ns

    times = {"plain": [], "instrumented": []}
    with torch.inference_mode():
        for _ in range(3):  # warm both paths
            plain()
            instrumented()
        started = time.perf_counter()
        for i in range(args.pairs):
            order = [("plain", plain), ("instrumented", instrumented)]
            if i % 2:
                order.reverse()
            for name, fn in order:
                times[name].append(fn())
    plain_ns, instr_ns = times["plain"], times["instrumented"]
    paired = sorted(b / a for a, b in zip(plain_ns, instr_ns, strict=True))
    quartiles = statistics.quantiles(paired, n=4)
    p, q = statistics.median(plain_ns), statistics.median(instr_ns)
    print(f"model {args.model}, --len {args.seq_len}, {args.pairs} alternating pairs "
          f"({time.perf_counter() - started:.0f} s), {instrumented.ranges} ranges per prefill")
    print(f"plain TTFT        median {p / 1e6:9.2f} ms   min {min(plain_ns) / 1e6:9.2f} ms")
    print(f"instrumented TTFT median {q / 1e6:9.2f} ms   min {min(instr_ns) / 1e6:9.2f} ms")
    print(f"overhead ratio (median of paired ratios) {statistics.median(paired):.4f}  "
          f"[IQR {quartiles[0]:.4f}..{quartiles[2]:.4f}]   target <= 1.01")
    print(f"overhead ratio (of minimums)             {min(instr_ns) / min(plain_ns):.4f}")
    print(f"overhead ratio (of medians)              {q / p:.4f}")
    per_range = _isolated_range_cost_ns()
    print(f"isolated cost of one hooked range {per_range / 1e3:.2f} us x {instrumented.ranges} ranges "
          f"= estimated ratio {1 + per_range * instrumented.ranges / p:.4f} (noise-free lower bound)")


def _isolated_range_cost_ns(calls: int = 20000) -> float:
    """Extra time of a module call that carries our hooks and range, against the same call bare.

    The module is named `mlp` so that `instrument` hooks it as a component, exactly as it hooks
    a model's modules (nothing else of the toy parent matches a rule)."""
    import torch
    from torch import nn

    from profiler.instrumentation import instrument
    from profiler.recorders.host import RangeRecorder

    parent = nn.Module()
    parent.mlp = nn.Identity()
    module, x = parent.mlp, torch.zeros(1)

    def loop() -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter_ns()
            for _ in range(calls):
                module(x)
            best = min(best, (time.perf_counter_ns() - start) / calls)
        return best

    bare = loop()
    recorder = RangeRecorder()
    with instrument(parent, recorder) as info:
        if info.module_count != 1:
            raise RuntimeError(f"expected one hooked module, instrument hooked {info.module_count}")
        hooked = loop()
        recorder.take()
    return hooked - bare


if __name__ == "__main__":
    main()
