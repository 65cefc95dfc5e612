"""ttft-profile capture side: everything that touches torch, CUDA or NVTX.

Heavy imports stay inside functions so `import profiler` is cheap.
"""
from __future__ import annotations

from profiler.version import __version__

__all__ = ["__version__", "profile_prefill", "instrument", "Sampling", "Settings", "Run", "profile_generate",
           "watch_generate", "GenerateRun"]


def __getattr__(name):
    if name == "profile_prefill":
        from profiler.measure import profile_prefill

        return profile_prefill
    if name in ("profile_generate", "watch_generate", "GenerateRun"):
        import profiler.generate

        return getattr(profiler.generate, name)
    if name == "instrument":
        from profiler.instrumentation import instrument

        return instrument
    if name == "Sampling":
        from profiler.sampling import Sampling

        return Sampling
    if name == "Settings":
        from profiler.settings import Settings

        return Settings
    if name == "Run":
        from analyzers.run import Run

        return Run
    raise AttributeError(f"module 'profiler' has no attribute {name!r}")
