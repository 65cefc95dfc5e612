"""Prefill lint: configuration mistakes a run shows, each with its evidence and the ms at stake.

"What should I fix first?" is usually a setting, not a kernel: logits over every position,
SDPA falling back to its math kernel, fp32 upcasts, host syncs inside the forward, padding.
Each rule reads the run (and its trace when there is one) and returns at most one Finding;
`lint` ranks them by the milliseconds they cost, largest first, so the first is the answer.
Computed once, in `analyzers.tables.compute_tables`, and carried on `RunTables.findings` to the
terminal (top 3), `--json` and the report.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Finding:
    key: str  # stable id, e.g. "all-position-logits"
    title: str  # one line a user reads first
    evidence: str  # what in the run shows it (numbers, names)
    ms: float | None  # TTFT the fix would win back at most (None when the run cannot tell)
    fix: str  # what to change

    def to_dict(self) -> dict:
        return asdict(self)


def lint(run, tables=None) -> list[Finding]:
    """Every finding of this run, the costliest first (unknown cost last)."""
    found: list[Finding] = []
    for rule in RULES:
        finding = rule(run, tables)
        if finding is not None:
            found.append(finding)
    return sorted(found, key=lambda f: (f.ms is None, -(f.ms or 0.0)))


def _all_position_logits(run, _tables) -> Finding | None:
    if run.logits_kept != "all":
        return None
    return Finding("all-position-logits", "lm_head computes logits for every position, not only the last",
                   f"run.json logits_kept = 'all' at n={run.seq_len}", None,
                   "pass logits_to_keep=1 (or slice the last hidden state before lm_head), as serving engines do")


RULES = [_all_position_logits]
