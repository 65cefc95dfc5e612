"""Where a run is written, and how a failed run leaves nothing half-written.

A run is saved into a hidden staging folder beside its final place and
renamed into place only when every file is written, so `analyze` never sees
a folder that looks whole but is not. The staging folder's name carries the
writer's process id: one whose process is gone was left by a killed run
(SIGKILL, power loss), and the next run in the same place names it.
"""
from __future__ import annotations

import datetime as _dt
import errno
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from analyzers.atomic import WriteError, umask_mode, write_failure
from analyzers.errors import InputError, ParameterError

STAGING = re.compile(r"^\..+\.partial-(?P<pid>\d+)-")
RAW_TRACE = ".trace.raw.json"  # the profiler's own trace, before finalize_trace makes trace.json.gz of it
_TAKEN = (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR)


def default_run_dir(root: Path, model: str, seq_len: int | None = None, kind: str | None = None) -> Path:
    """`<model>-n<len>-<time>` for a run, `<model>-<kind>-<time>` for a sweep; never an existing folder."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/")).strip("_") or "model"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    middle = kind if kind else f"n{seq_len}"
    candidate = root / f"{slug}-{middle}-{stamp}"
    suffix = 2
    while candidate.exists() or candidate.is_symlink():
        candidate = root / f"{slug}-{middle}-{stamp}-{suffix}"
        suffix += 1
    return candidate


def staging_folder_in(path: Path) -> Path | None:
    """The staging folder `path` is, or lies inside; None for an ordinary path."""
    for part in (path, *path.parents):
        if STAGING.match(part.name):
            return part
    return None


def check_out(final: Path) -> None:
    """Refuse an output folder that cannot work, before anything slow runs."""
    if final.is_symlink():
        what = "is a symbolic link" if final.exists() else "is a symbolic link to nothing"
        raise ParameterError("out", str(final), what, "pass a real folder path", quote=False)
    if final.exists() and not final.is_dir():
        raise ParameterError("out", str(final), "is a file, not a folder", "choose a new folder name", quote=False)
    if final.is_dir() and any(final.iterdir()):
        raise ParameterError("out", str(final), "already exists and is not empty", "choose a new folder or remove it",
                             quote=False)
    if staging_folder_in(final.absolute()) is not None:
        raise ParameterError("out", str(final), "is inside the staging folder of another run",
                             "choose a folder of your own", quote=False)
    place = final.absolute().parent
    while not place.exists() and not place.is_symlink():
        place = place.parent
    if not place.is_dir():
        raise ParameterError("out", str(final), f"lies under {place}, which is not a folder", "pass a writable `out`",
                             quote=False)
    if not os.access(place, os.W_OK | os.X_OK):
        raise ParameterError("out", str(final), f"lies under {place}, which this user cannot write",
                             "pass a writable `out`", quote=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def leftovers(parent: Path) -> list[Path]:
    """Staging folders in `parent` whose writer is gone: the remains of a killed run."""
    try:
        children = sorted(parent.iterdir())
    except OSError:
        return []
    return [c for c in children if (m := STAGING.match(c.name)) and c.is_dir() and not _alive(int(m["pid"]))]


class StagedFolder:
    """A temp folder next to `final` that becomes `final` on commit, or vanishes.

    Used as a context manager: an exception before commit removes the staging
    folder (an OSError inside it becomes one sentence); a KeyboardInterrupt
    after commit is marked with `committed_folder`, so the message can say the
    folder is complete.
    """

    def __init__(self, final: Path):
        self.final = final
        self.committed = False
        check_out(final)
        left = leftovers(final.absolute().parent)
        if left:
            print(f"a run killed earlier left {', '.join(map(str, left))}; remove "
                  f"{'it' if len(left) == 1 else 'them'}.", file=sys.stderr)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
            self.path.chmod(umask_mode(0o777))
        except OSError as exc:
            raise InputError(
                f"cannot write the run folder under {final.parent} ({exc.strerror}); pass a writable `out`."
            ) from None

    def __enter__(self) -> StagedFolder:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None:
            return False
        if self.committed:
            if isinstance(exc, KeyboardInterrupt):
                exc.committed_folder = self.final
            return False
        self.discard()
        if isinstance(exc, OSError | WriteError):
            sentence = self._write_sentence(exc)
            if sentence is not None:
                raise sentence from None
        return False

    def _write_sentence(self, exc: BaseException) -> WriteError | None:
        """A failed write inside the staging folder, named by its final path; None for anything else."""
        staged, final = str(self.path), str(self.final)
        if isinstance(exc, WriteError):
            text = str(exc).replace(staged, final)
            return WriteError(text) if text != str(exc) else None
        name = str(exc.filename or "")
        if not name.startswith(staged):
            return None
        if os.path.basename(name) == RAW_TRACE:  # the profiler's trace, not a file the user knows
            trace = str(Path(name).parent / "trace.json.gz").replace(staged, final)
            if exc.errno == errno.ENOENT:
                return WriteError(f"the profiler wrote no trace for {trace}; profile again, or without a trace.")
            return WriteError(f"the profiler could not write the trace {trace} ({exc.strerror or exc}); "
                              "free some space there or profile without a trace.")
        return write_failure(name.replace(staged, final), exc)

    def commit(self) -> Path:
        """Rename into place; a folder another writer filled meanwhile is left untouched."""
        try:
            os.rename(self.path, self.final)  # replaces only an empty folder, never a written one
        except OSError as exc:
            self.discard()
            if exc.errno in _TAKEN:
                raise InputError(f"{self.final} was written by another run while this one ran, so this run was not "
                                 "saved; pass another `out`.") from None
            raise write_failure(self.final, exc) from None
        except BaseException:  # a signal: the rename is atomic, so the folder is either in place or staged
            self.committed = not self.path.exists() and self.final.is_dir()
            raise
        self.committed = True
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
