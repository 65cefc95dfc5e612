"""ttft-profile analysis side: pure functions over saved runs and traces.

Never imports torch: a run folder can be analysed on a machine without it.
"""
from __future__ import annotations

from analyzers.breakdown import breakdown, layer_breakdown, ttft_stats
from analyzers.run import Run, RunFormatError, load_run

__all__ = ["Run", "RunFormatError", "load_run", "breakdown", "layer_breakdown", "ttft_stats"]
