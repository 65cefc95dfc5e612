"""The one place an error becomes what a user reads: one sentence, exit code 2.

The library speaks in its own parameter names (`seq_len`, `top_p`); here they
become the flags the user typed (`--len`, `--top-p`). Anything that is not
bad input (a bug) is left to raise, with its traceback.
"""
from __future__ import annotations

import argparse
import re

from analyzers.errors import InputError, ParameterError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# library parameter -> the flag that sets it
FLAGS: dict[str, str] = {
    "seq_len": "--len", "seq_lens": "--len", "layers": "--layers", "batch": "--batch", "dtype": "--dtype",
    "device": "--device", "attn": "--attn", "warmup": "--warmup", "repeat": "--repeat",
    "temperature": "--temperature", "top_p": "--top-p", "seed": "--seed", "gpu": "--gpu",
    "telemetry_interval_ms": "--nvml-interval-ms", "out": "--out", "top": "--top", "efficiency": "--efficiency",
    "max_trace_mb": "--max-trace-mb", "component_rules": "--component-rule",
    "model": "--model", "tp": "--tp", "interconnect": "--interconnect", "chunk": "--chunk", "chunks": "--chunk",
}
_BACKTICKED = re.compile(r"`(" + "|".join(sorted(FLAGS, key=len, reverse=True)) + r")`")

# What to install when an optional heavy dependency is missing (analyze and predict need none of them).
MISSING_HINTS = {
    "torch": "profiling and calibrate need it: run `make run`, or `pip install torch==2.13.0` then the project.",
    "transformers": "profiling needs it: `pip install transformers`, or run `make run`.",
    "matplotlib": "reports need it: `pip install matplotlib`, or run `make run`.",
}


class UsageError(InputError):
    """A mistake on the command line itself, already worded in flags."""


class ArgParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one sentence (a UsageError), not a usage dump and exit."""

    def error(self, message):
        raise UsageError(f"{message}; see `{self.prog} --help`.")


def in_flags(exc: InputError) -> str:
    """The error's sentence with parameter names turned into flags, ending in one full stop."""
    if isinstance(exc, ParameterError):
        text = exc.sentence(FLAGS.get(exc.parameter, exc.parameter))
    else:
        text = str(exc)
    text = _BACKTICKED.sub(lambda m: FLAGS[m.group(1)], text)
    return text.rstrip(".") + "."


def missing_dependency(exc: ImportError) -> str | None:
    """One sentence for an optional dependency that is not installed; None for any other ImportError."""
    name = (getattr(exc, "name", None) or str(exc)).split(".")[0]
    if name not in MISSING_HINTS:
        return None
    return f"{name} is not installed; {MISSING_HINTS[name]}"
