"""The console tables are printed on: a terminal's own width (or `COLUMNS`), or a wide one in a pipe.

rich assumes 80 columns when stdout is not a terminal, and squeezes the
numbers of wide tables (the roofline columns, kernel names) into ellipses;
a pipe or a CI log has no width limit, so it gets PIPE_WIDTH. `COLUMNS` wins
over both (rich reads it), so `COLUMNS=80 ttft-profile ... | less` shows what
an 80-column terminal would. The run table picks its column set from this
width (analyzers.render.terminal); the other tables are laid out within it.
"""
from __future__ import annotations

import os
import sys

PIPE_WIDTH = 200


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH)
