"""`ttft-profile calibrate`: measure this device's matmul rate and copy bandwidth.

Each ceiling is the best rate seen over a few sizes, not one size's rate:
a roofline floor must be a lower bound on time, and a working set that sits
in cache copies faster than one in DRAM, so a single large-buffer figure
would let small activations beat their "floor".
"""
from __future__ import annotations

import datetime as _dt
import time
from typing import Callable

from analyzers.cost.ceilings import Ceilings

MATMUL_SIZES = {"cpu": (256, 512, 1024, 2048), "cuda": (2048, 4096, 8192)}
COPY_MIB = {"cpu": (1, 4, 16, 64, 256), "cuda": (16, 256, 2048)}
# float16 matmuls on a CPU are emulated and take minutes at these sizes: no CPU ceiling for them
DTYPES = {"cpu": ("float32", "bfloat16"), "cuda": ("float32", "bfloat16", "float16")}


def _timed(fn: Callable[[], None], sync: Callable[[], None], min_seconds: float) -> float:
    """Seconds per call: repeat until min_seconds have passed, keep the best of three such batches."""
    fn()
    sync()
    best = float("inf")
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            if calls % 4 == 0:
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
        best = min(best, elapsed / calls)
    return best


def measure_matmul(device: str, dtype: str, sizes=None, min_seconds: float = 0.2) -> dict[int, float]:
    """FLOP/s of n x n @ n x n per size (2 n^3 FLOPs a call)."""
    import torch

    kind = "cuda" if device.startswith("cuda") else "cpu"
    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
    out = {}
    for n in sizes or MATMUL_SIZES[kind]:
        a = torch.randn(n, n, device=device).to(getattr(torch, dtype))
        b = torch.randn(n, n, device=device).to(getattr(torch, dtype))
        c = torch.empty(n, n, device=device, dtype=a.dtype)
        seconds = _timed(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), sync, min_seconds)
        out[n] = 2 * n**3 / seconds
    return out


def measure_copy(device: str, sizes_mib=None, min_seconds: float = 0.2) -> dict[int, float]:
    """Bytes/s of a copy into a preallocated buffer, counting bytes read plus bytes written."""
    import torch

    kind = "cuda" if device.startswith("cuda") else "cpu"
    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
    out = {}
    for mib in sizes_mib or COPY_MIB[kind]:
        src = torch.ones(mib * 2**20, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        seconds = _timed(lambda src=src, dst=dst: dst.copy_(src), sync, min_seconds)
        out[mib] = 2 * src.numel() / seconds
    return out


def calibrate(device: str, device_name: str, progress: Callable[[str], None] | None = None) -> Ceilings:
    kind = "cuda" if device.startswith("cuda") else "cpu"
    flops, details = {}, {"matmul_flops_per_s": {}, "copy_bytes_per_s": {}}
    for dtype in DTYPES[kind]:
        if progress:
            progress(f"matmul {dtype}")
        try:
            rates = measure_matmul(device, dtype)
        except RuntimeError:  # a dtype this device cannot multiply: no ceiling for it
            continue
        flops[dtype] = max(rates.values())
        details["matmul_flops_per_s"][dtype] = {str(k): v for k, v in rates.items()}
    if progress:
        progress("copy bandwidth")
    copies = measure_copy(device)
    details["copy_bytes_per_s"] = {f"{k} MiB": v for k, v in copies.items()}
    import torch

    details["torch"] = torch.__version__
    details["threads"] = torch.get_num_threads()
    details["measured_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return Ceilings(device_name, flops, max(copies.values()), f"calibrated {details['measured_at'][:10]}", details)
