"""The one error type the CLI turns into a sentence and exit code 2, and the parser that raises it."""
from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad input: the message names the problem and the fix in one sentence."""

    @classmethod
    def from_error(cls, exc: BaseException) -> "UsageError":
        """An analyzers-side error (already one sentence) as the CLI's error, ending in one full stop."""
        return cls(str(exc).rstrip(".") + ".")


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message: library errors can run to pages."""
    text = str(exc)
    return text.splitlines()[0] if text else (default or type(exc).__name__)


class ArgParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one sentence (a UsageError), not a usage dump and exit."""

    def error(self, message):
        raise UsageError(f"{message}; see `{self.prog} --help`.")
