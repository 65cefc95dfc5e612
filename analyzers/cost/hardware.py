"""Datasheet ceilings of known GPUs, from analyzers/data/gpus.json.

A roofline needs a peak to divide by before anyone has calibrated the card,
and `predict` needs one for a GPU the user does not even have. The figures
live in the data file, each with the document it comes from, so that checking
or adding a GPU is an edit to data rather than to code. CPUs are absent on
purpose: their ceilings depend on cores, clocks and BLAS, so only calibration
gives them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from analyzers.errors import InputError

GPUS_PATH = Path(__file__).parents[1] / "data" / "gpus.json"


class HardwareError(InputError):
    """A question the hardware table cannot answer; the message says what it does know."""


@dataclass(frozen=True)
class HardwareSpec:
    """One row of the table: dense peaks (TFLOP/s) per dtype, DRAM bandwidth, and their sources."""

    key: str
    name: str
    peak_tflops: dict[str, float] = field(hash=False)
    bandwidth_gbs: float
    sm_count: int
    boost_clock_mhz: float
    sources: dict[str, str] = field(hash=False)
    note: str | None = None

    def peak_flops(self, dtype: object) -> float:
        """FLOP/s for `dtype`; raising rather than guessing, since a wrong ceiling gives a wrong efficiency.

        Accepts the table's names, their long forms and str(torch.dtype), so
        callers can pass whatever they hold without importing torch here.
        """
        name = _dtype_key(dtype)
        if name not in self.peak_tflops:
            asked = _dtype_text(dtype)
            shown = asked if asked == name else f"{asked} ({name})"
            raise HardwareError(f"{self.name} has no {shown} peak in the hardware table; "
                                f"it has {', '.join(self.peak_tflops)}.")
        return self.peak_tflops[name] * 1e12

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Bytes/s, decimal as datasheets count them (GB/s = 1e9 bytes/s, not GiB)."""
        return self.bandwidth_gbs * 1e9


def known_gpus() -> dict[str, HardwareSpec]:
    """Every row by key; a fresh dict so callers cannot edit the cached table."""
    return dict(_table()[0])


def gpu_by_key(key: str) -> HardwareSpec:
    """The row a user named on the command line, forgiving case and separators ("H100_SXM", "h100 sxm")."""
    specs = _table()[0]
    wanted = _squash(key)
    for spec in specs.values():
        if _squash(spec.key) == wanted:
            return spec
    raise HardwareError(f"Unknown GPU {key!r}; known GPUs: {', '.join(sorted(specs))}.")


def detect_gpu(device_name: str) -> HardwareSpec | None:
    """The row for a name as torch or NVML reports it, or None rather than a near miss.

    Variants of one chip differ in bandwidth and clocks ("H100 PCIe" vs
    "H100 80GB HBM3"), so the longest pattern match wins: a more specific
    pattern always beats a generic one that happens to match as well.
    """
    specs, patterns = _table()
    return _best_match(device_name, patterns, specs)


def _best_match(device_name: str, patterns: dict[str, tuple[re.Pattern, ...]],
                specs: dict[str, HardwareSpec]) -> HardwareSpec | None:
    best_key, best_len = None, -1
    for key, regexes in patterns.items():
        for regex in regexes:
            found = regex.search(device_name or "")
            if found and len(found.group(0)) > best_len:
                best_key, best_len = key, len(found.group(0))
    return specs[best_key] if best_key is not None else None


def _dtype_text(dtype: object) -> str:
    return str(dtype).strip().lower().removeprefix("torch.")


def _dtype_key(dtype: object) -> str:
    text = _dtype_text(dtype)
    aliases = _aliases()
    if text not in aliases:
        raise HardwareError(f"Unknown dtype {dtype!r} for the hardware table; use one of {', '.join(sorted(aliases))}.")
    return aliases[text]


def _squash(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(text).lower())


@lru_cache(maxsize=1)
def _document() -> dict:
    try:
        return json.loads(GPUS_PATH.read_text())
    except (OSError, ValueError) as exc:
        raise HardwareError(f"{GPUS_PATH} is unreadable ({exc}); restore it from the package.") from exc


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    try:
        return dict(_document()["dtype_aliases"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HardwareError(f"{GPUS_PATH} has no usable dtype_aliases ({exc!r}); restore it from the package.") from exc


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, HardwareSpec], dict[str, tuple[re.Pattern, ...]]]:
    doc = _document()
    specs, patterns = {}, {}
    try:
        documents = doc["documents"]
        for row in doc["gpus"]:
            spec = HardwareSpec(
                key=row["key"], name=row["name"],
                peak_tflops={k: float(v) for k, v in row["peak_tflops"].items()},
                bandwidth_gbs=float(row["bandwidth_gbs"]), sm_count=int(row["sm_count"]),
                boost_clock_mhz=float(row["boost_clock_mhz"]),
                sources={k: _resolve(v, documents) for k, v in row["sources"].items()},
                note=row.get("note"))
            specs[spec.key] = spec
            patterns[spec.key] = tuple(re.compile(p, re.IGNORECASE) for p in row["device_names"])
    except (KeyError, TypeError, ValueError, re.error) as exc:
        raise HardwareError(f"{GPUS_PATH} has a malformed row ({exc!r}); restore it from the package.") from exc
    return specs, patterns


def _resolve(source: str, documents: dict[str, str]) -> str:
    """Expand document ids into full titles, so each figure's source reads on its own in a report."""
    ids = "|".join(re.escape(doc_id) for doc_id in sorted(documents, key=len, reverse=True))
    return re.sub(rf"(?<![\w-])({ids})(?![\w-])", lambda m: documents[m.group(1)], source)
