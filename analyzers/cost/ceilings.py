"""Ceilings a roofline divides by: measured ones from `ttft-profile calibrate`, cached per device.

Measured ceilings beat datasheets (clocks, power limits, drivers and the
kernels torch picks all sit between a datasheet and a user), and they are the
only ceilings a CPU has. The cache is plain JSON so that `predict` and
`analyze` read it without torch.
"""
from __future__ import annotations

import json
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


def _read_all() -> dict:
    path = cache_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_calibrated(device_name: str) -> Ceilings | None:
    entry = _read_all().get(device_name)
    if not isinstance(entry, dict):
        return None
    try:
        return Ceilings.from_dict(entry)
    except (KeyError, TypeError, ValueError):
        return None


def save_calibrated(ceilings: Ceilings) -> Path:
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _read_all()
    data[ceilings.device_name] = ceilings.to_dict()
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path


def from_datasheet(spec, device_name: str | None = None) -> Ceilings:
    """Ceilings from a hardware-table row (analyzers.cost.hardware.HardwareSpec)."""
    flops = {dtype_name(k) or k: v * 1e12 for k, v in spec.peak_tflops.items()}
    return Ceilings(device_name or spec.name, flops, spec.bandwidth_gbs * 1e9,
                    f"datasheet: {spec.name}", {"key": spec.key, "boost_clock_mhz": spec.boost_clock_mhz})


def choose(device_name: str, on_gpu: bool, gpu_key: str | None = None) -> tuple[Ceilings | None, str]:
    """The ceilings a run uses, and a line saying which: --gpu, then calibration, then the datasheet.

    An explicit --gpu wins (the user is asking "what if"); otherwise measured
    ceilings for this very device; otherwise, on a GPU the table knows, its
    datasheet; otherwise none, and the run says how to get them.
    """
    from analyzers.cost.hardware import detect_gpu, gpu_by_key

    if gpu_key:
        spec = gpu_by_key(gpu_key)
        return from_datasheet(spec, device_name), f"ceilings: datasheet of {spec.name} (--gpu {gpu_key})"
    calibrated = load_calibrated(device_name)
    if calibrated is not None:
        return calibrated, f"ceilings: {calibrated.source} on this device ({cache_path()})"
    if on_gpu:
        spec = detect_gpu(device_name)
        if spec is not None:
            return from_datasheet(spec, device_name), (f"ceilings: datasheet of {spec.name}; "
                                                       "`ttft-profile calibrate` measures this card's own")
    return None, "no ceilings for this device: run `ttft-profile calibrate` once to get a roofline"
