"""Which modules no rule knew, when they hold enough of TTFT to mislead.

A module the rules miss is timed as a `module:<pattern>` detail of `residual` (the pattern has `*`
for the layer index), so the sentence can hand the user a ready --component-rule. Computed once
here and carried by `RunTables`, so the terminal, `--json` and the report say the same thing.
"""
from __future__ import annotations

import pandas as pd

from analyzers.component_names import UNCLAIMED_PREFIX
from analyzers.components import median_repeat
from analyzers.run import Run
from analyzers.vocabulary import REMAINDERS

UNCLAIMED_SHARE = 0.05  # residual or the remainder past this share of TTFT: say which modules hold it
NAMED_SHARE = 0.01  # a module is named when it holds at least this share


def unclaimed_modules(run: Run) -> dict[str, float]:
    """{module pattern: share of the median repeat's TTFT} for every unclaimed module."""
    if not run.ttft_ns:
        return {}
    chosen = median_repeat(run)
    ttft = run.ttft_ns[chosen]
    held: dict[str, int] = {}
    for row in run.component_ns:
        detail = row.get("detail")
        if row["repeat"] == chosen and detail and detail.startswith(UNCLAIMED_PREFIX):
            name = detail[len(UNCLAIMED_PREFIX):]
            held[name] = held.get(name, 0) + row["ns"]
    return {name: ns / ttft for name, ns in held.items()} if ttft else {}


def unclaimed_notice(run: Run, table: pd.DataFrame) -> str | None:
    """One sentence naming the modules that hold TTFT when `residual` or the remainder is over 5%."""
    shares = table.set_index("component")["share"]
    if max(float(shares.get(c, 0.0)) for c in ("residual", *REMAINDERS)) <= UNCLAIMED_SHARE:
        return None
    named = sorted(((share, name) for name, share in unclaimed_modules(run).items() if share >= NAMED_SHARE),
                   reverse=True)
    if not named:
        return None
    top = ", ".join(f"{name} {100 * share:.0f}%" for share, name in named[:5])
    return (f"unclaimed modules hold TTFT: {top}; name them with --component-rule MODULE_PATTERN=COMPONENT "
            "(API: component_rules={pattern: component}).")
