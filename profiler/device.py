"""Device and dtype choice, checked before anything is built.

A dtype the device cannot run, or a run that cannot fit, should fail in a
sentence before minutes of model building, not as a kernel error or an OOM kill.
"""
from __future__ import annotations

import contextlib
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


def device_index(device: str) -> int | None:
    """The CUDA index of a torch device string (`cuda` is 0); None for anything else."""
    if not device.startswith("cuda"):
        return None
    return int(device.split(":", 1)[1]) if ":" in device else 0


def use_device(device: str) -> None:
    """Make `device` the current CUDA device for the rest of the process.

    Events record on, and a bare synchronize waits for, the *current* device: without this a
    `cuda:1` run would time cuda:0's stream.
    """
    index = device_index(device)
    if index is not None:
        import torch

        torch.cuda.set_device(index)


def device_context(device: str):
    """`device` as the current CUDA device for a block (library callers who never ran `use_device`)."""
    index = device_index(device)
    if index is None:
        return contextlib.nullcontext()
    import torch

    return torch.cuda.device(index)


# torch.get_float32_matmul_precision() -> what a float32 matmul computes in on tensor-core GPUs
_FP32_MATMUL = {"highest": "ieee", "high": "tf32", "medium": "bf16"}


def precision_settings() -> dict:
    """The switches that decide what a float32 matmul really computes in, as run.json records them.

    With TF32 on, an fp32 GEMM runs on tensor cores at several times the fp32 (CUDA-core) peak,
    so a roofline against the fp32 peak would show efficiency above 1.
    """
    import torch

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    precision = torch.get_float32_matmul_precision()
    mode = _FP32_MATMUL.get(precision, precision)
    if mode == "ieee" and matmul.allow_tf32:
        mode = "tf32"
    out = {"float32_matmul_precision": precision, "cuda_matmul_allow_tf32": bool(matmul.allow_tf32),
           "cudnn_allow_tf32": bool(cudnn.allow_tf32), "float32_matmul": mode}
    for name in ("allow_bf16_reduced_precision_reduction", "allow_fp16_reduced_precision_reduction"):
        if hasattr(matmul, name):
            out[f"cuda_matmul_{name}"] = bool(getattr(matmul, name))
    return out


def precision_notice(precision: dict, dtype: str, device: str) -> str | None:
    """A float32 run on a GPU whose matmuls are not IEEE float32 says so."""
    mode = precision.get("float32_matmul", "ieee")
    if dtype != "float32" or not device.startswith("cuda") or mode == "ieee":
        return None
    return (f"note: float32 matmuls run as {mode} here (float32_matmul_precision "
            f"'{precision.get('float32_matmul_precision')}', allow_tf32 {precision.get('cuda_matmul_allow_tf32')}): "
            "tensor cores do them faster than the fp32 peak the roofline divides by, so its efficiency can pass "
            "100%; torch.set_float32_matmul_precision('highest') times IEEE float32.")


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
        index = device_index(device)
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
    threads = torch.get_num_threads()
    name = f"{name} ({os.cpu_count()} cores, {threads} thread{'s' * (threads != 1)})"
    return DeviceInfo(device, name, _meminfo_bytes("MemTotal"), _meminfo_bytes("MemAvailable"))
