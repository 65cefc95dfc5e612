"""`ttft-profile report DIR`: report.html, a document that opens with its answer, and its figures.

The page reads top to bottom as a reader asks: the headline sentence (TTFT, floor, biggest gap,
first finding; `headline.headline_sentence`), the run's facts and notices, the breakdown as a
formatted table, the findings, then the figures: waterfall, roofline, per-layer heatmap,
telemetry over time with its phases; for a sweep first the lengths, the scaling fits with their
R² and the crossover, then the longest run.

Images are inlined as data: URIs (and styles are inline): the one file opens offline, mailed or
archived, with nothing beside it and no network resource. The PNGs are also written to
figures/, each with the CSV it was drawn from; the page links that CSV (a relative link, so it
works beside the folder) and shows the same table under a <details>.
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

from analyzers.atomic import WriteError, write_failure, write_text
from analyzers.errors import InputError
from analyzers.render.headline import headline_sentence
from analyzers.render.report_parts import Place, head
from analyzers.render.report_run import run_document
from analyzers.render.report_sweep import sweep_document
from analyzers.run import load_run
from analyzers.sweep import load_sweep
from analyzers.tables import compute_tables

_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class ReportError(InputError):
    """A folder that is neither a run nor a sweep, or one with files missing."""


def _run_report(folder: Path) -> str:
    tables = compute_tables(load_run(folder))
    run = tables.run
    place = Place(folder, folder / "figures")
    place.figs.mkdir(exist_ok=True)
    body = [head(f"TTFT of {run.model} at {run.seq_len:,} tokens", headline_sentence(tables)),
            *run_document(tables, place)]
    return "\n".join(body) + "\n</body></html>\n"


def _sweep_report(folder: Path) -> str:
    sweep = load_sweep(folder)
    summary, table = sweep.summary, sweep.table
    longest = summary["runs"][-1]
    tables = compute_tables(load_run(folder / longest))
    place = Place(folder, folder / "figures")
    place.figs.mkdir(exist_ok=True)
    title = (f"TTFT of {summary.get('model', '')} from {table['seq_len'].min():,} to {table['seq_len'].max():,} "
             "tokens")
    sentence = f"At {tables.run.seq_len:,} tokens, the longest of the sweep: {headline_sentence(tables)}"
    body = [head(title, sentence), *sweep_document(sweep, place),
            *run_document(tables, Place(folder, place.figs, prefix=f"{longest}-"))]
    return "\n".join(body) + "\n</body></html>\n"


def write_report(path: str | Path) -> Path:
    """Write report.html into a run or sweep folder and return its path.

    A write that fails (a full disk) is one sentence naming the file, and the
    figures folder this call created is removed: no half a report is left.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ReportError(f"{folder} is not a folder; pass a run folder or a sweep folder.")
    new_figures = not (folder / "figures").exists()
    try:
        return _write_page(folder)
    except BaseException:
        if new_figures:
            shutil.rmtree(folder / "figures", ignore_errors=True)
        raise


def _write_page(folder: Path) -> Path:
    try:
        if (folder / "sweep.json").exists():
            page = _sweep_report(folder)
        elif (folder / "run.json").exists():
            page = _run_report(folder)
        elif (folder / "chunk_sweep.json").exists():  # its table and figure are already in the folder
            raise ReportError(f"{folder} is a chunk sweep: its table and figure are chunk_sweep.csv and chunk_sweep.png "
                              f"there (`ttft-profile analyze` shows them); report one of its runs, e.g. "
                              f"{folder / 'unchunked'}.")
        elif (folder / "tp.json").exists():  # a tensor-parallel folder: each rank is a run of its own
            raise ReportError(f"{folder} is a tensor-parallel folder; report one rank's run ({folder / 'rank0'}), "
                              "or see every rank with `ttft-profile analyze` on the folder.")
        else:
            raise ReportError(f"{folder} holds neither run.json nor sweep.json, so it is not a run or a sweep folder.")
    except (InputError, OSError, KeyError, ValueError) as exc:
        if isinstance(exc, ReportError | WriteError):
            raise
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS and exc.filename:
            raise write_failure(exc.filename, exc) from None
        raise ReportError(f"{folder} could not be read whole ({str(exc).rstrip('.')}); "
                          "re-run the profile that made it.") from None
    out = folder / "report.html"
    write_text(out, page)
    return out
