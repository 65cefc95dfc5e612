"""How numbers read on a terminal: one place, so every table rounds alike."""
from __future__ import annotations

import math
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def finite(value: object) -> bool:
    """A number that can be printed as one (JSON null and NaN are gaps, not numbers)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def ms(value: float) -> str:
    """Milliseconds at 4-5 significant digits: 0.215, 13.11, 171.51, 2,048."""
    return f"{value:,.3f}" if value < 10 else f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"


def num(value: float | None, digits: int = 3) -> str:
    """A quantity of any size (GFLOP, MB, FLOP/B); blank for a gap."""
    if not finite(value):
        return ""
    if value == 0:
        return "0"
    if abs(value) < 0.001:  # a floor of a few ns, a near-zero fit slope: no e-notation in a table
        return "<0.001" if value > 0 else ">-0.001"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.{digits - 1}f}"


def share(value: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * value:.1f}%" if finite(value) else ""


def plain(text: str) -> str:
    """Text from someone else's file, safe for a terminal: control characters (escape sequences,
    carriage returns, bells) become `?`, so a kernel name cannot rewrite the screen."""
    return _CONTROL.sub("?", text)


def repeats_phrase(repeats: int, warmup: int) -> str:
    """`7 warm repeats, 2 warmup`; without warmup the first repeat is the cold prefill, and that is said."""
    if warmup == 0:
        return f"{repeats} repeat{'s' * (repeats != 1)}, no warmup: the first is the cold prefill"
    return f"{repeats} warm repeat{'s' * (repeats != 1)}, {warmup} warmup"
