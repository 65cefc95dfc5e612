"""ttft-profile analysis side: pure functions over saved runs and traces.

Never imports torch: a run folder can be analysed on a machine without it.
The public names load on first use, so importing one light module
(`analyzers.errors`, `analyzers.vocabulary`) does not pull in pandas: the
command line's `--help` and its error messages stay fast.
"""
from __future__ import annotations

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "Run": "analyzers.run", "RunFormatError": "analyzers.run", "load_run": "analyzers.run",
    "save_run": "analyzers.store", "RunTables": "analyzers.tables", "compute_tables": "analyzers.tables",
    "breakdown": "analyzers.components", "layer_breakdown": "analyzers.components", "ttft_stats": "analyzers.components",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'analyzers' has no attribute {name!r}")
