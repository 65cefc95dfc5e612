"""`ttft-profile calibrate`: measure this device's matmul rate and copy bandwidth, or refuse to.

A ceiling that is too low makes every later run report efficiencies above 1,
so each way of measuring one too low has a guard here:

- a busy machine: every measurement is repeated in batches until its
  BEST_OF fastest agree within STABLE_SPREAD (at most MAX_BATCHES batches or
  BUDGET_S seconds), and nothing is saved when one never settles, or when the
  1-minute load average on a CPU is above its CPUs before we start;
- the cache: copies use buffers of at least 4x the last-level cache, so the
  bandwidth is DRAM's (a floor from it is a lower bound only for traffic that
  does not fit in cache); a cached copy is faster, and a best-over-sizes figure
  from one would be no DRAM bandwidth at all;
- another setup: the cache key holds the device, the thread count and the
  dtypes measured (analyzers.cost.ceilings), so 8 threads' ceilings are not
  used by a run with 2.

The matmul ceiling is the best rate over a few sizes: a compute floor must be
a lower bound on time, and a size that suits the kernels best is still real.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from analyzers.cost.ceilings import Ceilings
from analyzers.errors import InputError
from profiler.contention import usable_cpus

MATMUL_SIZES = {"cpu": (256, 512, 1024, 2048), "cuda": (2048, 4096, 8192)}
# copy buffers as multiples of the last-level cache (L3 on a CPU, L2 on a GPU)
CACHE_MULTIPLES = {"cpu": (4, 8), "cuda": (4, 16)}
# when the cache size cannot be read: more than any current CPU's L3 slice or GPU's L2
UNKNOWN_CACHE_BYTES = 256 * 2**20
# float16 matmuls on a CPU are emulated and take minutes at these sizes: no CPU ceiling for them
DTYPES = {"cpu": ("float32", "bfloat16"), "cuda": ("float32", "bfloat16", "float16")}
BATCH_SECONDS = 0.2  # one batch: calls until this long has passed
BEST_OF = 3  # a rate is the fastest batch, once this many of the fastest agree...
STABLE_SPREAD = 0.05  # ...within this share of the fastest
MAX_BATCHES = 10
BUDGET_S = 8.0  # per measurement, so a noisy machine is refused in seconds rather than minutes
CACHE_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")
SAY_WHAT_TO_DO = "stop what else is running and run `ttft-profile calibrate` again; nothing was saved"


class CalibrationRefused(InputError):
    """Ceilings not saved: the machine was busy or a measurement never settled."""


@dataclass(frozen=True)
class Rate:
    """Work per second of the fastest batch, and how far the BEST_OF fastest were apart."""

    per_s: float
    spread: float  # (BEST_OF-th fastest - fastest) / fastest; inf with fewer than BEST_OF batches
    batches: int

    @property
    def stable(self) -> bool:
        return self.spread <= STABLE_SPREAD


def now() -> float:
    """The clock the budget is kept by (a test replaces it)."""
    return time.perf_counter()


def settle(batch: Callable[[], float], work: float) -> Rate:
    """Run `batch` (it returns seconds per call) until its BEST_OF fastest agree, or the budget runs out."""
    seconds: list[float] = []
    start = now()
    while True:
        seconds.append(batch())
        best = sorted(seconds)[:BEST_OF]
        spread = (best[-1] - best[0]) / best[0] if len(best) == BEST_OF else math.inf
        if spread <= STABLE_SPREAD or len(seconds) >= MAX_BATCHES or now() - start >= BUDGET_S:
            return Rate(work / best[0], spread, len(seconds))


class Source(Protocol):
    """Where calibrate's timings come from: torch on a device (TorchSource), or a fake in tests."""

    kind: str  # "cpu" or "cuda"

    def matmul(self, dtype: str, n: int) -> Callable[[], float]: ...
    def copy(self, nbytes: int) -> Callable[[], float]: ...
    def cache_bytes(self) -> tuple[int | None, str]: ...
    def threads(self) -> int: ...
    def version(self) -> str: ...


def _batch(fn: Callable[[], None], sync: Callable[[], None], every: int) -> Callable[[], float]:
    """A timer of one batch of `fn`: calls until BATCH_SECONDS have passed, seconds per call.

    The clock is read after a sync every `every` calls: a GPU queues calls and is synced
    rarely so the launches overlap; a CPU's call is done when it returns."""
    fn()
    sync()

    def one() -> float:
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            if calls % every == 0:
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= BATCH_SECONDS:
                    return elapsed / calls

    return one


def last_level_cache(root: Path = CACHE_SYSFS) -> tuple[int | None, str]:
    """Bytes of the highest cache level of cpu0 and where that came from; None when nothing says."""
    best = (0, 0, "")
    for index in sorted(root.glob("index*")):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit() and (level, int(digits) * scale) > best[:2]:
            best = (level, int(digits) * scale, str(index / "size"))
    if best[1]:
        return best[1], best[2]
    try:
        size = os.sysconf("SC_LEVEL3_CACHE_SIZE")
    except (ValueError, OSError, AttributeError):
        size = 0
    return (size, "sysconf SC_LEVEL3_CACHE_SIZE") if size > 0 else (None, "unknown")


class TorchSource:
    """Times real matmuls and copies with torch on `device`."""

    def __init__(self, device: str):
        import torch

        self.torch, self.device = torch, device
        self.kind = "cuda" if device.startswith("cuda") else "cpu"
        self.sync = torch.cuda.synchronize if self.kind == "cuda" else (lambda: None)
        self.every = 4 if self.kind == "cuda" else 1

    def matmul(self, dtype: str, n: int) -> Callable[[], float]:
        t = self.torch
        a = t.randn(n, n, device=self.device).to(getattr(t, dtype))
        b = t.randn(n, n, device=self.device).to(getattr(t, dtype))
        c = t.empty(n, n, device=self.device, dtype=a.dtype)
        return _batch(lambda: t.matmul(a, b, out=c), self.sync, self.every)

    def copy(self, nbytes: int) -> Callable[[], float]:
        src = self.torch.ones(nbytes, dtype=self.torch.uint8, device=self.device)
        dst = self.torch.empty_like(src)
        return _batch(lambda: dst.copy_(src), self.sync, self.every)

    def cache_bytes(self) -> tuple[int | None, str]:
        if self.kind == "cpu":
            return last_level_cache()
        props = self.torch.cuda.get_device_properties(self.torch.device(self.device))
        size = getattr(props, "L2_cache_size", 0)
        return (size, "torch.cuda.get_device_properties L2_cache_size") if size else (None, "unknown")

    def threads(self) -> int:
        return self.torch.get_num_threads()

    def version(self) -> str:
        return self.torch.__version__


def load_average() -> float | None:
    """The 1-minute load average; None where the system keeps none."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def busy(load1: float | None, cpus: int) -> str | None:
    """Why this CPU is too busy to calibrate on (the load average above its CPUs), or None."""
    if load1 is None or load1 <= cpus:  # without a load average the batches' spread is the only guard
        return None
    return (f"the 1-minute load average is {load1:.1f} on {cpus} CPUs, so other work would slow every "
            f"measurement and the ceilings would come out too low; {SAY_WHAT_TO_DO}")


def _settled(what: str, batch: Callable[[], float], work: float) -> Rate:
    rate = settle(batch, work)
    if math.isinf(rate.spread):
        raise CalibrationRefused(f"the {what} did not settle: only {rate.batches} batch(es) fit in {BUDGET_S:g} s, "
                                 f"fewer than the {BEST_OF} it takes to judge; {SAY_WHAT_TO_DO}")
    if not rate.stable:
        raise CalibrationRefused(f"the {what} did not settle: the {BEST_OF} fastest of {rate.batches} batches "
                                 f"were {100 * rate.spread:.0f}% apart (the bound is {100 * STABLE_SPREAD:.0f}%); "
                                 f"{SAY_WHAT_TO_DO}")
    return rate


def copy_sizes(kind: str, cache: int | None) -> list[int]:
    """Copy buffer sizes in bytes: CACHE_MULTIPLES of the last-level cache, in whole MiB."""
    base = cache or UNKNOWN_CACHE_BYTES
    return [math.ceil(k * base / 2**20) * 2**20 for k in CACHE_MULTIPLES[kind]]


def _matmuls(source: Source, progress) -> tuple[dict[str, float], dict]:
    flops, rates = {}, {}
    for dtype in DTYPES[source.kind]:
        if progress:
            progress(f"matmul {dtype}")
        per_size = {}
        for n in MATMUL_SIZES[source.kind]:
            try:
                batch = source.matmul(dtype, n)
            except RuntimeError:  # a dtype this device cannot multiply: no ceiling for it
                per_size = {}
                break
            per_size[n] = _settled(f"{dtype} {n}x{n} matmul", batch, 2 * n**3)
        if per_size:
            flops[dtype] = max(r.per_s for r in per_size.values())
            rates[dtype] = per_size
    return flops, rates


def calibrate(device: str, device_name: str, progress: Callable[[str], None] | None = None,
              source: Source | None = None, load: Callable[[], float | None] | None = None) -> Ceilings:
    """Measured ceilings of `device`; CalibrationRefused (nothing to save) on a busy or unsettled machine."""
    source = source or TorchSource(device)
    load1 = (load or load_average)()
    why = busy(load1, usable_cpus())
    if why and source.kind == "cpu":  # a GPU's kernels do not queue behind the host's other processes
        raise CalibrationRefused(why)
    flops, matmuls = _matmuls(source, progress)
    if progress:
        progress("copy bandwidth")
    cache, cache_from = source.cache_bytes()
    copies = {nbytes: _settled(f"{nbytes >> 20} MiB copy", source.copy(nbytes), 2 * nbytes)
              for nbytes in copy_sizes(source.kind, cache)}
    rates = [r for per in matmuls.values() for r in per.values()] + list(copies.values())
    measured_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    details = {
        "matmul_flops_per_s": {d: {str(n): r.per_s for n, r in per.items()} for d, per in matmuls.items()},
        "copy_bytes_per_s": {f"{nbytes >> 20} MiB": r.per_s for nbytes, r in copies.items()},
        "last_level_cache_bytes": cache, "last_level_cache_from": cache_from,
        "settled": {"best_of": BEST_OF, "bound": STABLE_SPREAD, "worst_spread": max(r.spread for r in rates)},
        # the key of the cache entry: host threads set a CPU's speed, not a GPU kernel's
        "threads": source.threads() if source.kind == "cpu" else None,
        "torch": source.version(), "measured_at": measured_at, "load1": load1,
    }
    return Ceilings(device_name, flops, max(r.per_s for r in copies.values()), f"calibrated {measured_at[:10]}",
                    details)
