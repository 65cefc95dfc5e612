"""How capture tells a bad environment from a bug.

Bad input is `analyzers.errors.InputError` on both sides; what lives here is
capture's own knowledge of failures: which exceptions mean "out of memory",
and how to keep a library's page-long message to its first line.
"""
from __future__ import annotations


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message: library errors can run to pages."""
    text = str(exc)
    return text.splitlines()[0] if text else (default or type(exc).__name__)


def is_oom(exc: BaseException) -> bool:
    """Host or device out of memory, whichever layer noticed it first."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
