"""Atomic writes: a reader sees the old file or the whole new one, never half.

A write that fails (a full disk, a read-only place) becomes a `WriteError`:
one sentence naming the file, and on a full disk the space it needed, so the
command line can print it instead of a traceback.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from analyzers.errors import InputError

_FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteError(InputError):
    """A file could not be written; the sentence names it and what would let the write succeed."""


def write_failure(target: str | os.PathLike, exc: OSError, needed: int | None = None) -> WriteError:
    """The sentence for `exc` raised while writing `target` (`needed` bytes where known)."""
    target = Path(target)
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in _FULL:
        space = f"{needed:,} bytes needed" if needed is not None else "more space needed"
        try:
            space += f", {shutil.disk_usage(target.parent).free:,} free there"
        except OSError:
            pass
        return WriteError(f"cannot write {target} ({reason}: {space}); free some space there or write elsewhere.")
    return WriteError(f"cannot write {target} ({reason}); make that place writable or write elsewhere.")


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    """The process umask, read without setting it where Linux allows (setting it races other threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(base: int) -> int:
    """The mode a plain open()/mkdir() would give: mkstemp/mkdtemp use 0600/0700."""
    return base & ~_umask()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` whole or not at all; a failed write is a WriteError naming `path`."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_failure(target, exc, len(data)) from None
    try:
        os.fchmod(fd, umask_mode(0o666))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_failure(target, exc, len(data)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
