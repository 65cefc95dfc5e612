"""Where a run is written, and how a failed run leaves nothing half-written.

A run is saved into a hidden staging folder beside its final place and
renamed into place only when every file is written, so `analyze` never sees
a folder that looks whole but is not.
"""
from __future__ import annotations

import datetime as _dt
import re
import shutil
import tempfile
from pathlib import Path

from analyzers.atomic import umask_mode
from analyzers.errors import InputError, ParameterError


def default_run_dir(root: Path, model: str, seq_len: int | None = None, kind: str | None = None) -> Path:
    """`<model>-n<len>-<time>` for a run, `<model>-<kind>-<time>` for a sweep; never an existing folder."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/")).strip("_") or "model"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    middle = kind if kind else f"n{seq_len}"
    candidate = root / f"{slug}-{middle}-{stamp}"
    suffix = 2
    while candidate.exists():
        candidate = root / f"{slug}-{middle}-{stamp}-{suffix}"
        suffix += 1
    return candidate


class StagedFolder:
    """A temp folder next to `final` that becomes `final` on commit, or vanishes."""

    def __init__(self, final: Path):
        self.final = final
        if final.exists() and not final.is_dir():
            raise ParameterError("out", str(final), "is a file, not a folder", "choose a new folder name", quote=False)
        if final.exists() and any(final.iterdir()):
            raise ParameterError("out", str(final), "already exists and is not empty", "choose a new folder or remove it",
                                 quote=False)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
            self.path.chmod(umask_mode(0o777))
        except OSError as exc:
            raise InputError(
                f"cannot write the run folder under {final.parent} ({exc.strerror}); pass a writable `out`."
            ) from None

    def commit(self) -> Path:
        if self.final.exists():
            self.final.rmdir()  # empty by the check above
        self.path.rename(self.final)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
