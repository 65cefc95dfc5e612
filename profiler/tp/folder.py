"""Rank 0 writes the tensor-parallel run folder: each rank's run, tp.json, one merged trace.

All of it is staged and renamed into place at once (profiler.runfolder.StagedFolder), so a
rank that fails, or a Ctrl-C, leaves no half-written folder behind.
"""
from __future__ import annotations

import json
from pathlib import Path

TP_SCHEMA = 1


def _tp_document(gathered: dict) -> dict:
    ranks = sorted(gathered["ranks"], key=lambda s: s["rank"])
    diffs = [s["logits_max_abs_diff"] for s in ranks]
    return {
        "schema": TP_SCHEMA, "kind": "tp", "tp": gathered["tp"], "ranks": [s["rank"] for s in ranks],
        "backend": ranks[0]["backend"],
        "clock_offsets_ns": {str(s["rank"]): int(s["offset_ns"]) for s in ranks},
        "hosts": {str(s["rank"]): s["host"] for s in ranks},
        # each rank's sharded last-position logits against the same model unsharded (float32 max |a - b|)
        "logits_max_abs_diff": max(diffs) if diffs else None,
    }


def write_tp_folder(final: Path, gathered: dict) -> Path:
    """Write what every rank sent (their run folders as bytes) under `final`; return the committed path."""
    from profiler.runfolder import StagedFolder

    doc = _tp_document(gathered)
    with StagedFolder(final) as staged:
        for sent in gathered["ranks"]:
            folder = staged.path / f"rank{sent['rank']}"
            for rel, data in sent["files"].items():
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        (staged.path / "tp.json").write_text(json.dumps(doc, indent=2) + "\n")
        first = next(s for s in gathered["ranks"] if s["rank"] == 0)
        (staged.path / "last_logits.json").write_text(json.dumps({"rank": 0, "logits": first["last_logits"]}) + "\n")
        traces = {s["rank"]: staged.path / f"rank{s['rank']}" / "trace.json.gz" for s in gathered["ranks"]}
        traces = {r: p for r, p in traces.items() if p.exists()}
        if traces:
            from analyzers.trace.merge import merge_rank_traces

            offsets = {r: int(doc["clock_offsets_ns"][str(r)]) for r in traces}
            merge_rank_traces(traces, offsets, staged.path / "trace.json.gz")
        return staged.commit()
