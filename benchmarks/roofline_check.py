"""Do the floors hold? Efficiency per component of the tiny built-ins against calibrated ceilings.

A floor is a lower bound on time, so no component may show an efficiency
above 1 (1.05 allows for timer noise); one that does has a wrong floor or a
wrong ceiling. Calibrates this device first when it has no cached ceilings.

    .venv/bin/python benchmarks/roofline_check.py [--len 2048] [--recalibrate]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--len", dest="seq_len", type=int, default=2048)
    parser.add_argument("--recalibrate", action="store_true")
    args = parser.parse_args()

    from analyzers import compute_tables
    from analyzers.cost.ceilings import load_calibrated, save_calibrated
    from profiler import profile_prefill
    from profiler.build import build
    from profiler.calibrate import calibrate
    from profiler.catalog import builtin_names, resolve
    from profiler.device import describe
    from profiler.measure import ModelOrigin

    name = describe("cpu").name
    ceilings = None if args.recalibrate else load_calibrated(name)
    if ceilings is None:
        ceilings = calibrate("cpu", name)
        save_calibrated(ceilings)
    print(f"{name}: {ceilings.source}; float32 {ceilings.flops_per_s['float32'] / 1e9:.1f} GFLOP/s, "
          f"copy {ceilings.bytes_per_s / 1e9:.1f} GB/s")
    worst_all = 0.0
    for model_name in [n for n in builtin_names() if n.startswith("tiny-")]:
        source = resolve(model_name)
        model = build(source, None, "float32", "cpu", "sdpa")
        run = profile_prefill(model, args.seq_len, warmup=2, repeat=5,
                              origin=ModelOrigin(name=model_name, config=source.config, ceilings=ceilings.to_dict()))
        tables = compute_tables(run)
        if tables.roofline is None:
            sys.exit(f"{model_name}: {tables.roofline_note}")
        roof = tables.roofline.dropna(subset=["efficiency"])
        worst = roof.loc[roof["efficiency"].idxmax()]
        worst_all = max(worst_all, worst["efficiency"])
        cells = " ".join(f"{r.component}={100 * r.efficiency:.0f}%" for r in roof.itertuples())
        print(f"{model_name:13s} max {100 * worst['efficiency']:5.1f}% ({worst['component']})  {cells}")
    print(f"highest efficiency over all components: {worst_all:.3f} (must be <= 1.05)")


if __name__ == "__main__":
    main()
