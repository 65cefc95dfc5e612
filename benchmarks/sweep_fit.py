"""On CPU, does attention in a real sweep fit c0 + c1·n + c2·n² with c2 > 0 and R² >= 0.98?

    .venv/bin/python benchmarks/sweep_fit.py [--model tiny-qwen3] [--len 512..4096]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen3")
    parser.add_argument("--len", dest="lengths", default="512..4096")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import pandas as pd

    from analyzers import compute_tables
    from analyzers.lengths import parse_lengths
    from analyzers.scaling import crossover, fit_components
    from analyzers.sweep import sweep_rows
    from analyzers.vocabulary import TOTAL
    from profiler import profile_prefill
    from profiler.build import build
    from profiler.catalog import resolve

    model = build(resolve(args.model), None, "float32", "cpu", "sdpa")
    rows = []
    for n in parse_lengths(args.lengths):
        run = profile_prefill(model, n, warmup=2, repeat=args.repeat, telemetry_interval_ms=None)
        rows += sweep_rows(compute_tables(run))
    table = pd.DataFrame(rows)
    fits = fit_components(table[table["component"] != TOTAL])
    attention, mlp = fits["attention"], fits["mlp"]
    c0, c1, c2 = attention.coefficients
    print(f"{args.model}, lengths {args.lengths}, {args.repeat} repeats each")
    for n, ms in table[table["component"] == "attention"][["seq_len", "ms"]].itertuples(index=False):
        print(f"  attention at {n:5d}: {ms:8.2f} ms")
    print(f"attention fit: {c0:.4g} + {c1:.4g}·n + {c2:.4g}·n²   R² {attention.r2:.4f}   "
          f"(c2 > 0: {c2 > 0}, R² >= 0.98: {attention.r2 >= 0.98})")
    print(f"mlp fit: {mlp.coefficients[0]:.4g} + {mlp.coefficients[1]:.4g}·n   R² {mlp.r2:.4f}")
    cross = crossover(attention, mlp, 1 << 20)
    print(f"attention overtakes the MLP at: {'%.0f tokens' % cross if cross else 'not below 1M tokens'}")


if __name__ == "__main__":
    main()
