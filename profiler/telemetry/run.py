"""Telemetry around a profiling run: which device to sample, and a sampler even when it is off.

The sampler starts before the warmup and stops after the last prefill (the
traced one included, so the trace gets its counters). NVML's device order is
not CUDA's under CUDA_VISIBLE_DEVICES, so the GPU is named by UUID.
"""
from __future__ import annotations

from profiler.telemetry.sampler import NullSampler, Sampler


def nvml_target(device: str) -> int | str | None:
    """The NVML identity of a torch device: its UUID string, else its index; None for a CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return f"GPU-{uuid}" if uuid else index


def start_sampler(device: str, interval_ms: float | None) -> Sampler | NullSampler:
    """A started sampler for the torch `device`; with `interval_ms` None a null one that samples nothing."""
    if interval_ms is None:
        return NullSampler()
    return Sampler(interval_ms=interval_ms, device_index=nvml_target(device)).start()
