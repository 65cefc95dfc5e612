"""How well K of L layers predict the whole model: profile 2 of 8 and all 8 layers of a tiny model.

The estimate scales per-layer components by L/K and keeps the rest
(analyzers.layers); the target is within 5% of the measured full TTFT.

    .venv/bin/python benchmarks/layer_extrapolation.py [--len 2048] [--layers 2] [--total 8]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--len", dest="seq_len", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--total", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from analyzers import ttft_stats
    from analyzers.layers import full_model_ttft_ms, layer_spread
    from profiler import profile_prefill
    from profiler.build import build
    from profiler.catalog import ModelSource, builtin_entry
    from profiler.measure import ModelOrigin

    config = dict(builtin_entry("tiny-qwen3")["config"], num_hidden_layers=args.total)
    source = ModelSource(f"tiny-qwen3 ({args.total} layers)", "builtin", config, None, "benchmark")
    results = {}
    for layers in (args.layers, args.total):
        model = build(source, layers, "float32", "cpu", "sdpa")
        # layers_built is read from the built model's config; the origin adds what it cannot tell.
        if model.config.num_hidden_layers != layers:
            sys.exit(f"built {model.config.num_hidden_layers} layers, asked for {layers}")
        run = profile_prefill(model, args.seq_len, warmup=2, repeat=args.repeat, telemetry_interval_ms=None,
                              origin=ModelOrigin(name=source.name, layers_total=args.total, config=config))
        results[layers] = run
        del model
    part, full = results[args.layers], results[args.total]
    estimate = full_model_ttft_ms(part)
    measured = ttft_stats(full)["p50_ms"]
    spread = layer_spread(part).set_index("component")
    print(f"tiny-qwen3 with {args.total} layers, --len {args.seq_len}, {args.repeat} repeats each")
    print(f"measured with {args.layers} layers:   {ttft_stats(part)['p50_ms']:9.2f} ms")
    print(f"estimate for all {args.total} layers:  {estimate:9.2f} ms")
    print(f"measured with all {args.total} layers: {measured:9.2f} ms")
    print(f"estimate / measured = {estimate / measured:.4f}  (error {100 * (estimate / measured - 1):+.2f}%, "
          "target within 5%)")
    for component in ("attention", "mlp"):
        if component in spread.index:
            row = spread.loc[component]
            print(f"  {component} per layer over the {args.layers} measured: mean {row['mean_ms']:.2f} ms, "
                  f"cv {row['cv']:.3f}")


if __name__ == "__main__":
    main()
