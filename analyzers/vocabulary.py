"""The words every part of ttft-profile shares, each defined once.

Components, phases, the label grammar, the total and remainder rows, colours
and dtypes are facts that capture, analysis and every renderer must agree on;
a second copy of any of them is a bug waiting to happen. This module sits on
the torch-free side so a run folder or a trace is read back with pandas alone.
"""
from __future__ import annotations

from dataclasses import dataclass

# Order is the order of the forward pass, so tables read like the maths.
COMPONENTS: tuple[str, ...] = (
    "h2d",
    "embedding",
    "rope",
    "norm",
    "qkv_proj",
    "qk_norm",
    "attention",
    "o_proj",
    "mlp",
    "communication",  # collectives of a tensor-parallel run (all-reduce, all-gather), waiting included
    "residual",
    "lm_head",
    "sampling",
    "d2h",
    "host_gap",
    "other",
)

# Ranges the prefill itself opens around the forward, whatever the model.
PREFILL_RANGES: tuple[str, ...] = ("h2d", "sampling", "d2h")

# Rows no range claims: what is left of the TTFT. On the host clock that is
# `other`; on a device clock (CUDA events) it is mostly the device idle,
# waiting for the host, hence `host_gap`.
HOST_REMAINDER, DEVICE_REMAINDER = "other", "host_gap"
REMAINDERS = frozenset({HOST_REMAINDER, DEVICE_REMAINDER})
# Rows a table leaves out, rather than print as `absent`, when the run has none: the other clock's
# remainder, and communication outside a tensor-parallel run (an absent row there says nothing).
QUIET_WHEN_ABSENT = REMAINDERS | {"communication"}

# Timing clocks a run records (`Run.timing`).
HOST_TIMING, DEVICE_TIMING = "host", "cuda-events"


def remainder_for(timing: str) -> str:
    """The row that holds unclaimed time on this clock."""
    return DEVICE_REMAINDER if timing == DEVICE_TIMING else HOST_REMAINDER


# Kernel classes of traces without our ranges: a contract with every table and `--json`; each device
# event gets exactly one (docs/kernel-classes.md says what each holds).
KERNEL_CLASSES: tuple[str, ...] = ("gemm", "attention", "kv_cache", "norm", "rope", "activation", "elementwise",
                                   "communication", "moe_routing", "memory", "sampling", "embedding", "other")

# The row (and sweep/diff/extrapolation key) that stands for the whole TTFT.
TOTAL = "ttft"

# The four phases of one TTFT, in order; their edges are the marks a prefill records.
PHASES: tuple[str, ...] = ("h2d", "forward", "sampling", "d2h")

# Fixed colours (0xRRGGBB) so a component looks the same in every Nsight or
# Perfetto session and every figure.
COLOURS: dict[str, int] = {
    "h2d": 0x9E9E9E,
    "embedding": 0x8D6E63,
    "rope": 0xFFB300,
    "norm": 0x26A69A,
    "qkv_proj": 0x1E88E5,
    "qk_norm": 0x00ACC1,
    "attention": 0xE53935,
    "o_proj": 0x3949AB,
    "mlp": 0x43A047,
    "communication": 0xFDD835,
    "residual": 0x78909C,
    "lm_head": 0x8E24AA,
    "sampling": 0xF4511E,
    "d2h": 0x757575,
    "host_gap": 0xFFFFFF,
    "other": 0xBDBDBD,
}

# -- dtypes -----------------------------------------------------------------------------------
# Canonical dtype name -> bytes per element. The names are torch's (`getattr(torch, name)` works) except
# fp8, which torch splits into several formats and datasheets quote as one.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2, "fp8": 1}
# What users and configs write -> the canonical name.
DTYPE_ALIASES: dict[str, str] = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "float8": "fp8", "fp8": "fp8", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8",
}
# dtypes a model can be built and profiled in (fp8 is a datasheet peak, not a build dtype).
BUILD_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")


def dtype_name(name: object) -> str | None:
    """The canonical name for `bf16`, `torch.bfloat16`, `BFloat16`...; None when unknown."""
    text = str(name).lower().removeprefix("torch.")
    return DTYPE_ALIASES.get(text)


def dtype_bytes(name: object, default: int = 2) -> int:
    """Bytes per element of a dtype name; `default` for one the table does not know."""
    canonical = dtype_name(name)
    return DTYPE_BYTES[canonical] if canonical else default


# -- labels -----------------------------------------------------------------------------------
LABEL_PREFIX = "ttft/"
# The NVTX domain our ranges live in (Nsight filters by it).
NVTX_DOMAIN = "ttft"


@dataclass(frozen=True)
class RangeKey:
    """What one range measures: a component, optionally a layer and a detail."""

    component: str
    layer: int | None = None
    detail: str | None = None

    @property
    def label(self) -> str:
        return format_label(self.component, self.layer, self.detail)


def format_label(component: str, layer: int | None = None, detail: str | None = None) -> str:
    """`ttft/<component>[/L<layer>][/<detail>]`: one grammar for NVTX, torch.profiler and files."""
    parts = [LABEL_PREFIX + component]
    if layer is not None:
        parts.append(f"L{layer}")
    if detail:
        parts.append(detail)
    return "/".join(parts)


def parse_label(label: str) -> RangeKey | None:
    """Inverse of `format_label`; None for names that are not ours."""
    if not label.startswith(LABEL_PREFIX):
        return None
    parts = label[len(LABEL_PREFIX):].split("/")
    component = parts[0]
    if component not in COMPONENTS:
        return None
    layer = None
    rest = parts[1:]
    if rest and rest[0].startswith("L") and rest[0][1:].isdigit():
        layer = int(rest[0][1:])
        rest = rest[1:]
    return RangeKey(component, layer, "/".join(rest) or None)
