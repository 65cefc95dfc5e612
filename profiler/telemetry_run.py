"""Telemetry around a profiling run: which device to sample, and what to keep of it.

The sampler starts before the warmup and stops after the last prefill (the
traced one included, so the trace gets its counters). NVML's device order is
not CUDA's under CUDA_VISIBLE_DEVICES, so the GPU is named by UUID.
"""
from __future__ import annotations

from profiler.telemetry import Sampler


def nvml_target(device: str):
    """The NVML identity of a torch device: its UUID string, else its index; None for a CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return f"GPU-{uuid}" if uuid else index


def start_sampler(device: str, interval_ms: float | None) -> Sampler | None:
    if interval_ms is None:
        return None
    sampler = Sampler(interval_ms=interval_ms, device_index=nvml_target(device))
    sampler.start()
    return sampler


def summary(sampler: Sampler, marks: list[tuple], spans: list | None) -> dict:
    """What run.json keeps: the sampling window, the caveats, and averages per phase and component."""
    from analyzers.telemetry.spans import attribute_samples

    rows = sampler.samples()
    first, last, count = sampler.window()
    table = attribute_samples(rows, marks, spans, sampler.interval_ms)
    return {
        "kind": sampler.kind,
        "device": sampler.device,
        "warning": sampler.warning,
        "interval_ms": sampler.interval_ms,
        "window_ms": (last - first) / 1e6 if first is not None and last is not None else 0.0,
        "samples": count,
        "gaps": dict(sampler.gaps),
        "unsupported": list(sampler.unsupported),
        "notes": list(sampler.notes),
        "file": "nvml.csv",
        "attributed": table.to_dict("records"),
    }
