"""The one error type the CLI turns into a sentence and exit code 2."""
from __future__ import annotations


class UsageError(Exception):
    """Bad input: the message names the problem and the fix in one sentence."""

