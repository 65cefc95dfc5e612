"""The one error type the CLI turns into a sentence and exit code 2, and the parser that raises it."""
from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad input: the message names the problem and the fix in one sentence."""


class ArgParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one sentence (a UsageError), not a usage dump and exit."""

    def error(self, message):
        raise UsageError(f"{message}; see `{self.prog} --help`.")
