"""The report's building blocks: a page head, formatted tables, and figures with their data beside them.

Every string that comes from a run (a model name, a notice, a finding) goes through `esc`, so a
name with `<` in it is text, never markup. Numbers are formatted here, once, so every table in
the page rounds alike (milliseconds as `fmt.ms`, shares with one decimal) and none shows a raw
float such as `1.55e-05`.
"""
from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from analyzers.atomic import write_failure, write_text
from analyzers.render.fmt import finite, num

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#212121;line-height:1.45;padding:0 1rem}
h1{font-size:1.3rem;font-weight:600;margin:0 0 .4rem}h2{font-size:1.1rem;margin-top:2.2rem;
border-bottom:1px solid #e0e0e0}h3{font-size:1rem;margin-top:1.4rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{padding:.2rem .6rem;border-bottom:1px solid #eee}
th{text-align:left;background:#fafafa}td{text-align:right;font-variant-numeric:tabular-nums}
td:first-child,td.text{text-align:left}tr.absent td{color:#9e9e9e}tfoot td{font-weight:600;border-top:1px solid #bdbdbd}
img{max-width:100%;border:1px solid #eee}.note{color:#616161;font-size:.85rem}
.notice{background:#fff8e1;border-left:4px solid #ffb300;padding:.4rem .8rem;margin:.4rem 0;font-size:.9rem}
.facts td{text-align:left}.facts td:first-child{color:#616161}
details{margin:.3rem 0 1rem}summary{cursor:pointer;color:#1565c0;font-size:.85rem}
ol.findings li{margin-bottom:.8rem}.at-stake{font-weight:600}
"""


def esc(text: object) -> str:
    """Text from a run, safe inside HTML text and quoted attributes."""
    return html.escape(str(text), quote=True)


def head(title: str, headline: str) -> str:
    """The page opens with its headline: the first heading a reader (or a test) meets is the answer."""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1 id='headline'>{esc(headline)}</h1>"
            f"<p class='note'>{esc(title)}</p>")


def cell(value: object) -> str:
    """One table cell as text: numbers at 3-4 significant digits with thousands separators, gaps blank."""
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":
        return "yes" if value else "no"
    if isinstance(value, (int, float)) or hasattr(value, "dtype"):
        return num(float(value), 4) if finite(float(value)) else ""
    return "" if value is None else str(value)


def table(header: list[str], rows: list[list[object]], *, footer: list[object] | None = None,
          row_classes: list[str] | None = None, text_columns: tuple[int, ...] = (0,)) -> str:
    """An HTML table of already chosen cells; numbers are formatted by `cell`, text escaped."""
    def tr(cells: list[object], tag: str = "td", css: str = "") -> str:
        inner = "".join(f"<{tag}{' class=text' if i in text_columns and tag == 'td' else ''}>{esc(cell(c))}</{tag}>"
                        for i, c in enumerate(cells))
        return f"<tr{f' class={css}' if css else ''}>{inner}</tr>"

    classes = row_classes or [""] * len(rows)
    body = "".join(tr(r, css=c) for r, c in zip(rows, classes, strict=True))
    foot = f"<tfoot>{tr(footer)}</tfoot>" if footer else ""
    return f"<table><thead>{tr(header, 'th')}</thead><tbody>{body}</tbody>{foot}</table>"


def frame_table(frame: pd.DataFrame, index: bool = False) -> str:
    """A DataFrame as a formatted table (the data behind a figure, a sweep table)."""
    shown = frame.reset_index() if index else frame
    text = tuple(i for i, dtype in enumerate(shown.dtypes) if not pd.api.types.is_numeric_dtype(dtype))
    rows = [list(r) for r in shown.itertuples(index=False)]
    return table([str(c) for c in shown.columns], rows, text_columns=text or (0,))


@dataclass(frozen=True)
class Place:
    """Where a page's figures go: `figs` holds the PNG and CSV files, `root` the report.html that links them."""

    root: Path
    figs: Path
    prefix: str = ""

    def link(self, path: Path, label: str | None = None) -> str:
        """A relative link from the page to a file beside it (a CSV, a run's nvml.csv)."""
        rel = Path(os.path.relpath(path, self.root)).as_posix()
        return f"<a href='{esc(rel)}'>{esc(label or rel)}</a>"


@dataclass(frozen=True)
class Figure:
    uri: str  # the PNG as a data URI: the page stands alone
    csv: Path  # the figure's data, beside its PNG


def figure(place: Place, name: str, data: pd.DataFrame, draw: Callable, *draw_args,
           index: bool = False) -> Figure:
    """Draw a PNG (written atomically: a temporary name, then renamed) and save its data as CSV beside it."""
    png, csv = place.figs / f"{place.prefix}{name}.png", place.figs / f"{place.prefix}{name}.csv"
    tmp = place.figs / f".{place.prefix}{name}.tmp.png"
    try:
        draw(data, tmp, *draw_args)
        tmp.replace(png)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failure(png, exc) from None
    write_text(csv, data.to_csv(index=index, float_format="%.6g"))
    return Figure("data:image/png;base64," + base64.b64encode(png.read_bytes()).decode(), csv)


def figure_block(place: Place, title: str, fig: Figure, shown: str, caption: str = "") -> str:
    """A section: heading, caption, the image, and its data one click away (a table and the CSV)."""
    parts = [f"<h2>{esc(title)}</h2>"]
    if caption:
        parts.append(f"<p class='note'>{esc(caption)}</p>")
    parts.append(f"<img alt='{esc(title)}' src='{fig.uri}'>")
    parts.append(f"<p class='note'>Drawn from {place.link(fig.csv)}.</p>")
    parts.append(f"<details><summary>the data behind this figure</summary>{shown}</details>")
    return "\n".join(parts)


def note(text: str) -> str:
    return f"<p class='note'>{esc(text)}</p>"


def notice(text: str) -> str:
    return f"<div class='notice'>{esc(text)}</div>"
