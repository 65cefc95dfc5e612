"""Progress on long waits, on a terminal only: pipes and CI logs get clean output."""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

from profiler.quiet import quiet

Update = Callable[[str, int, int], None]  # (detail, done, total)


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Update | None]:
    """A rich bar on stderr while the block runs, updated by the yielded callable; None off a terminal."""
    if not sys.stderr.isatty() or quiet():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task(label, total=None)

    def update(detail: str, done: int, total: int) -> None:
        bar.update(task, description=f"{label} ({detail})", completed=done, total=total)

    with bar:
        yield update


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on a terminal while a long step (model building) runs."""
    if not sys.stderr.isatty() or quiet():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield
