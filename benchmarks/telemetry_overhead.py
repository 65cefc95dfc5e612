"""Cost of the telemetry sampler on TTFT: the same timed prefill with and without it running.

One process, one model, ABBA order; prints the ratio of median TTFTs and the
median of paired ratios. Target: at most 1.01.

    .venv/bin/python benchmarks/telemetry_overhead.py [--model tiny-qwen3] [--len 2048] [--pairs 60] [--interval-ms 10]
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

    from profiler import profile_prefill
    from profiler.build import build
    from profiler.catalog import resolve

    model = build(resolve(args.model), None, "float32", "cpu", "sdpa")

    def one(with_sampler: bool) -> int:
        # Through the public entry point, so "with" costs what a real run pays: the sampler
        # thread and the range spans it asks for. The null sampler stands for telemetry off.
        interval = args.interval_ms if with_sampler else None
        run = profile_prefill(model, args.seq_len, warmup=0, repeat=1, telemetry_interval_ms=interval)
        return run.ttft_ns[0]

    times = {True: [], False: []}
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
