"""Ceilings a roofline divides by: measured ones from `ttft-profile calibrate`, cached per device.

Measured ceilings beat datasheets (clocks, power limits, drivers and the
kernels torch picks all sit between a datasheet and a user), and they are the
only ceilings a CPU has. The cache is plain JSON so that `predict` and
`analyze` read it without torch; an entry is keyed by device, host thread
count and dtypes (`cache_key`), since a CPU's matmul rate scales with its
threads and a ceiling from another count would be wrong by that factor.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from analyzers.atomic import write_text
from analyzers.vocabulary import dtype_name


@dataclass(frozen=True)
class Ceilings:
    """Peak rates a component's floor is computed from, and where they come from."""

    device_name: str
    flops_per_s: dict[str, float]
    bytes_per_s: float
    source: str
    details: dict = field(default_factory=dict)

    def peak_flops(self, dtype: str) -> float | None:
        return self.flops_per_s.get(dtype_name(dtype) or dtype)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Ceilings":
        return cls(data["device_name"], dict(data["flops_per_s"]), float(data["bytes_per_s"]),
                   data["source"], dict(data.get("details", {})))


def cache_path() -> Path:
    """`$TTFT_PROFILE_CACHE`, else `$XDG_CACHE_HOME/ttft-profile`, else `~/.cache/ttft-profile`."""
    root = os.environ.get("TTFT_PROFILE_CACHE")
    if root:
        return Path(root) / "ceilings.json"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ttft-profile" / "ceilings.json"


# Version 2 keys entries by device, thread count and dtypes and holds only settled, DRAM-sized
# measurements (profiler.calibrate); version 1 was {device_name: ceilings} with neither.
CACHE_FORMAT = 2


@dataclass(frozen=True)
class CacheFile:
    """The cache's entries (key -> Ceilings as a dict), and how many older-format entries were set aside."""

    entries: dict
    stale: int
    bad: int = 0


def cache_key(device_name: str, threads: int | None, dtypes) -> str:
    """One entry per device, host thread count (None on a GPU, whose kernels it does not change) and dtype set."""
    return f"{device_name} | {'any' if threads is None else threads} threads | {','.join(sorted(dtypes))}"


def read_cache() -> CacheFile:
    """The cache as saved; an older format's entries are counted, never used."""
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return CacheFile({}, 0)
    if not isinstance(data, dict):
        return CacheFile({}, 0)
    if data.get("format") != CACHE_FORMAT:
        return CacheFile({}, sum(isinstance(v, dict) for v in data.values()))
    entries = data.get("entries")
    entries = entries if isinstance(entries, dict) else {}
    usable = {key: entry for key, entry in entries.items() if _usable(entry)}
    return CacheFile(usable, 0, len(entries) - len(usable))


def _rate(value) -> bool:
    """A rate a roofline may divide by: a finite positive number (not a string, a bool, NaN, zero or negative)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _usable(entry) -> bool:
    """An entry whose every rate is a rate; anything else (a hand edit, a broken write) is set aside."""
    if not isinstance(entry, dict) or not isinstance(entry.get("device_name"), str):
        return False
    flops = entry.get("flops_per_s")
    return (isinstance(flops, dict) and bool(flops) and all(_rate(v) for v in flops.values())
            and _rate(entry.get("bytes_per_s")) and isinstance(entry.get("details", {}), dict))


def _matches(ceilings: Ceilings, device_name: str, threads: int | None, dtype: str | None) -> bool:
    recorded = ceilings.details.get("threads")
    return (ceilings.device_name == device_name
            and (threads is None or recorded is None or recorded == threads)
            and (dtype is None or ceilings.peak_flops(dtype) is not None))


def load_calibrated(device_name: str, threads: int | None = None, dtype: str | None = None) -> Ceilings | None:
    """The newest calibration of this device at this thread count with a peak for `dtype`; None if none.

    On a CPU the device name from profiler.device.describe carries the thread count as well,
    so a caller that passes no `threads` still gets no other count's ceilings.
    """
    found = []
    for entry in read_cache().entries.values():
        try:
            ceilings = Ceilings.from_dict(entry)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if _matches(ceilings, device_name, threads, dtype):
            found.append(ceilings)
    return max(found, key=lambda c: str(c.details.get("measured_at", "")), default=None)


def save_calibrated(ceilings: Ceilings) -> Path:
    """Add (or replace) this calibration's entry; a cache in an older format is replaced whole."""
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = dict(read_cache().entries)
    entries[cache_key(ceilings.device_name, ceilings.details.get("threads"), ceilings.flops_per_s)] = ceilings.to_dict()
    write_text(path, json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=1, sort_keys=True) + "\n")
    return path


def stale_note() -> str | None:
    """One sentence when the cache holds entries no run uses: an older format's, or ones with unusable rates."""
    cache = read_cache()
    stale = cache.stale
    if cache.bad and not stale:
        return (f"the ceilings cache {cache_path()} has {cache.bad} entr{'y' if cache.bad == 1 else 'ies'} whose rates "
                "are not finite positive numbers, ignored; run `ttft-profile calibrate` again")
    if not stale:
        return None
    return (f"the ceilings cache {cache_path()} is in an older format ({stale} entr{'y' if stale == 1 else 'ies'}, "
            "measured without stability checks and with copies that fit in cache) and is ignored; "
            "run `ttft-profile calibrate` again")


def from_datasheet(spec, device_name: str | None = None) -> Ceilings:
    """Ceilings from a hardware-table row (analyzers.cost.hardware.HardwareSpec)."""
    flops = {dtype_name(k) or k: v * 1e12 for k, v in spec.peak_tflops.items()}
    return Ceilings(device_name or spec.name, flops, spec.bandwidth_gbs * 1e9,
                    f"datasheet: {spec.name}", {"key": spec.key, "boost_clock_mhz": spec.boost_clock_mhz})


def choose(device_name: str, on_gpu: bool, gpu_key: str | None = None, threads: int | None = None,
           dtype: str | None = None) -> tuple[Ceilings | None, str]:
    """The ceilings a run uses, and a line saying which: --gpu, then calibration, then the datasheet.

    An explicit --gpu wins (the user is asking "what if"); otherwise measured
    ceilings for this very device, thread count and dtype; otherwise, on a GPU
    the table knows, its datasheet; otherwise none, and the run says how to get them.
    """
    from analyzers.cost.hardware import detect_gpu, gpu_by_key

    if gpu_key:
        spec = gpu_by_key(gpu_key)
        return from_datasheet(spec, device_name), f"ceilings: datasheet of {spec.name} (--gpu {gpu_key})"
    calibrated = load_calibrated(device_name, threads, dtype)
    if calibrated is not None:
        return calibrated, f"ceilings: {calibrated.source} on this device ({cache_path()})"
    stale = stale_note()
    if on_gpu:
        spec = detect_gpu(device_name)
        if spec is not None:
            return from_datasheet(spec, device_name), (f"ceilings: datasheet of {spec.name}; "
                                                       + (stale or "`ttft-profile calibrate` measures this card's own"))
    return None, stale or "no ceilings for this device: run `ttft-profile calibrate` once to get a roofline"
