"""Rank 0 writes the tensor-parallel run folder: each rank's run, tp.json, one merged trace.

All of it is staged and renamed into place at once (profiler.runfolder.StagedFolder), so a
rank that fails, or a Ctrl-C, leaves no half-written folder behind. tp.json's layout is
defined once, by the reader's side (analyzers.tp.write_tp_file).
"""
from __future__ import annotations

import json
from pathlib import Path


def write_tp_folder(final: Path, gathered: dict) -> Path:
    """Write what every rank sent (their run folders as bytes) under `final`; return the committed path."""
    from analyzers.tp import write_tp_file
    from profiler.runfolder import StagedFolder

    ranks = sorted(gathered["ranks"], key=lambda s: s["rank"])
    offsets = {s["rank"]: int(s["offset_ns"]) for s in ranks}
    with StagedFolder(final) as staged:
        for sent in ranks:
            folder = staged.path / f"rank{sent['rank']}"
            for rel, data in sent["files"].items():
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        # each rank's sharded last-position logits against the same model unsharded: float32 max |a - b|
        write_tp_file(staged.path, gathered["tp"], offsets, ranks[0]["backend"],
                      logits_max_abs_diff=max(s["logits_max_abs_diff"] for s in ranks),
                      hosts={s["rank"]: s["host"] for s in ranks})
        (staged.path / "last_logits.json").write_text(json.dumps({"rank": 0, "logits": ranks[0]["last_logits"]}) + "\n")
        traces = {s["rank"]: staged.path / f"rank{s['rank']}" / "trace.json.gz" for s in ranks}
        if any(p.exists() for p in traces.values()):
            from analyzers.trace.merge import merge_rank_traces

            merge_rank_traces(traces, offsets, staged.path / "trace.json.gz")
        return staged.commit()
