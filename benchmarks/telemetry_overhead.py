"""Cost of the telemetry sampler on TTFT: the same timed prefill with and without it running.

One process, one model, ABBA order; prints the ratio of median TTFTs and the
median of paired ratios. Target: at most 1.01.

    .venv/bin/python benchmarks/telemetry_overhead.py [--model tiny-qwen3] [--len 2048] [--pairs 20] [--interval-ms 10]
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
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    args = parser.parse_args()

    import torch

    from profiler.build import build
    from profiler.catalog import resolve
    from profiler.instrumentation import instrument
    from profiler.measure import _one_prefill
    from profiler.recorders.host import RangeRecorder
    from profiler.sampling import Sampling
    from profiler.telemetry import Sampler

    model = build(resolve(args.model), None, "float32", "cpu", "sdpa")
    ids = torch.randint(0, model.config.vocab_size, (1, args.seq_len), generator=torch.Generator().manual_seed(0))
    sample = Sampling().make("cpu")
    recorder = RangeRecorder()

    def one(with_sampler: bool) -> int:
        sampler = Sampler(interval_ms=args.interval_ms).start() if with_sampler else None
        try:
            ns = _one_prefill(model, ids, "cpu", recorder, sample, lambda: None, {"logits_to_keep": 1})[0]
        finally:
            if sampler is not None:
                sampler.stop()
        recorder.take()
        return ns

    times = {True: [], False: []}
    with torch.inference_mode(), instrument(model, recorder):
        for _ in range(3):
            one(False)
            one(True)
        started = time.perf_counter()
        for i in range(args.pairs):
            order = [False, True] if i % 2 == 0 else [True, False]
            for flag in order:
                times[flag].append(one(flag))
    off, on = times[False], times[True]
    paired = sorted(b / a for a, b in zip(off, on, strict=True))
    print(f"model {args.model}, --len {args.seq_len}, sampler every {args.interval_ms:g} ms, {args.pairs} ABBA pairs "
          f"({time.perf_counter() - started:.0f} s)")
    print(f"TTFT without sampler median {statistics.median(off) / 1e6:9.2f} ms")
    print(f"TTFT with sampler    median {statistics.median(on) / 1e6:9.2f} ms")
    print(f"overhead ratio (median of paired ratios) {statistics.median(paired):.4f}   target <= 1.01")
    print(f"overhead ratio (of medians)              {statistics.median(on) / statistics.median(off):.4f}")


if __name__ == "__main__":
    main()
