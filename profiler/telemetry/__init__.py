"""Telemetry while the prefills run: a sampler thread over one source, NVML's GPU or this process.

Callers use `start_sampler(device, interval_ms)`; it returns a null sampler
when telemetry is off, so the capture code has no "is it on?" branches.
"""
from __future__ import annotations

from profiler.telemetry.run import nvml_target, start_sampler
from profiler.telemetry.sampler import THREAD_NAME, Clocks, NullSampler, Sampler

__all__ = ["THREAD_NAME", "Clocks", "NullSampler", "Sampler", "nvml_target", "start_sampler"]
