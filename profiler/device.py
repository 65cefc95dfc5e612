"""Device and dtype choice, checked before anything is built.

A dtype the device cannot run, or a run that cannot fit, should fail in a
sentence before minutes of model building, not as a kernel error or an OOM kill.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from analyzers.errors import ParameterError
from analyzers.vocabulary import BUILD_DTYPES, dtype_name
from profiler.errors import first_line


@dataclass(frozen=True)
class DeviceInfo:
    """What the run ran on, as recorded in run.json."""

    device: str
    name: str
    total_memory_bytes: int | None
    available_memory_bytes: int | None


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ParameterError("device", requested, "asked for a GPU but torch sees none", "use `device` cpu",
                                 quote=False)
        index = 0 if requested == "cuda" else requested.split(":", 1)[1]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ParameterError("device", requested, f"does not exist: torch sees {count} GPU(s)",
                                 f"use cuda:0 to cuda:{count - 1}", quote=False)
        return f"cuda:{int(index)}"
    raise ParameterError("device", requested, "is not one of auto, cpu, cuda or cuda:N", "pick one of those")


def resolve_dtype(requested: str, device: str, config_dtype: str | None) -> str:
    """`auto` is the config's dtype on a GPU and float32 on a CPU (where bf16 matmuls are emulated on most chips)."""
    if requested == "auto":
        if device.startswith("cuda"):
            return dtype_name(config_dtype or "bfloat16") or "bfloat16"
        return "float32"
    dtype = dtype_name(requested)
    if dtype not in BUILD_DTYPES:
        raise ParameterError("dtype", requested, "is not known", "use one of float32, bfloat16, float16 or auto")
    return dtype


def check_dtype_runs(dtype: str, device: str) -> None:
    """Run one tiny matmul so an unsupported dtype fails here, in a sentence."""
    import torch

    try:
        x = torch.ones(8, 8, dtype=getattr(torch, dtype), device=device)
        (x @ x).sum().item()
    except (RuntimeError, TypeError) as exc:
        first = first_line(exc)
        raise ParameterError("dtype", dtype, f"does not run on {device} ({first})", "pick another `dtype`",
                             quote=False) from None


def _meminfo_bytes(field: str) -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def describe(device: str) -> DeviceInfo:
    import torch

    if device.startswith("cuda"):
        index = int(device.split(":")[1])
        free, total = torch.cuda.mem_get_info(index)
        return DeviceInfo(device, torch.cuda.get_device_name(index), total, free)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = f"{name} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return DeviceInfo(device, name, _meminfo_bytes("MemTotal"), _meminfo_bytes("MemAvailable"))
