"""ttft-profile analysis side: pure functions over saved runs and traces.

Never imports torch: a run folder can be analysed on a machine without it.
"""
from __future__ import annotations

from analyzers.breakdown import breakdown, layer_breakdown, ttft_stats
from analyzers.run import Run, RunFormatError, load_run
from analyzers.store import save_run
from analyzers.tables import RunTables, compute_tables

__all__ = ["Run", "RunFormatError", "RunTables", "load_run", "save_run", "compute_tables", "breakdown",
           "layer_breakdown", "ttft_stats"]
