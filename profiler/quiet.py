"""`--quiet`: the result and its warnings and errors, nothing else on stderr (no notes, no progress).

An environment variable rather than a setting, because the chatter comes from every layer (the
session's notes, the CLI's progress bars, the tensor-parallel launcher) and must reach the rank
processes the launcher starts; the CLI sets it for the length of one command and restores it.
"""
from __future__ import annotations

import os

QUIET_ENV = "TTFT_PROFILE_QUIET"


def quiet() -> bool:
    return os.environ.get(QUIET_ENV) == "1"


def say(line: str) -> None:
    """A note or a progress line on stderr, unless --quiet; warnings (`warning:`) always."""
    import sys

    if not quiet() or line.startswith("warning"):
        print(line, file=sys.stderr)
