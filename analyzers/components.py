"""The component vocabulary shared by capture and analysis.

It lives on the torch-free side so that a run folder or a trace can be read
back (labels parsed, rows ordered) on a machine with only pandas.
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
    "residual",
    "lm_head",
    "sampling",
    "d2h",
    "host_gap",
    "other",
)

# Components that only some architectures have: absent ones are reported as
# absent rather than as a zero that looks like a measurement.
OPTIONAL_COMPONENTS = frozenset({"qk_norm"})

# Rows no range claims: what is left of the TTFT. On the host clock that is
# `other`; on a device clock (CUDA events) it is mostly the device idle,
# waiting for the host, hence `host_gap`.
REMAINDERS = frozenset({"other", "host_gap"})

# Fixed colours (0xRRGGBB) so a component looks the same in every Nsight or
# Perfetto session.
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
    "residual": 0x78909C,
    "lm_head": 0x8E24AA,
    "sampling": 0xF4511E,
    "d2h": 0x757575,
    "host_gap": 0xFFFFFF,
    "other": 0xBDBDBD,
}

LABEL_PREFIX = "ttft/"


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
