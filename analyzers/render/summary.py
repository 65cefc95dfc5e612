"""The machine-readable result of `--json` for a run: stable keys, ms units."""
from __future__ import annotations

from analyzers.render.chunks import chunks_json
from analyzers.render.fmt import finite
from analyzers.tables import RunTables


def run_json(tables: RunTables) -> dict:
    """What `ttft-profile --json` and `analyze RUN --json` print; every number from `RunTables`."""
    run, roof = tables.run, tables.roofline
    components = [{**row, "ms_per_layer": row["ms_per_layer"] if finite(row["ms_per_layer"]) else None}
                  for row in tables.breakdown.to_dict("records")]
    return {
        "roofline": None if roof is None else roof.to_dict("records"),
        "ttft_floor_ms": tables.floor_ms,  # per component, unfused: the model as written
        # the whole prefill's physical limit: floor_ms, flops, bytes, compute_ms, memory_ms, bound
        "physical_floor_ms": None if tables.physical_floor is None else tables.physical_floor["floor_ms"],
        "physical_floor": tables.physical_floor,
        "ceilings": run.ceilings,
        "telemetry": {k: v for k, v in (run.telemetry or {}).items() if k != "attributed"} or None,
        "model": run.model,
        "random_weights": run.random_weights,
        "layers_built": run.layers_built,
        "layers_total": run.layers_total,
        "seq_len": run.seq_len,
        "batch": run.batch,
        "dtype": run.dtype,
        "device": run.device,
        "device_name": run.device_name,
        "attn": run.attn,
        "logits_kept": run.logits_kept,
        "sampling": run.sampling,
        "ttft": tables.stats,
        "noise": None if tables.noise is None else tables.noise.to_dict(),
        "contention": run.contention,
        "components": components,
        "chunks": chunks_json(run),  # a chunked prefill's ms per chunk (analyzers.render.chunks); null unchunked
        "estimate": None if tables.extrapolation is None else tables.extrapolation.to_dict("records"),
        "findings": [f.to_dict() for f in tables.findings],  # analyzers.lint.lint, costliest first
        "notices": run.notices + [n for n in (tables.roofline_note, tables.unclaimed) if n],
        "run_dir": run.path,
    }
