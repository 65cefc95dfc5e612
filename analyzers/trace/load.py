"""Read a Kineto (torch.profiler) Chrome-trace JSON into one pandas DataFrame.

One row per trace event, in file order. The frame is the only thing the
linking step (`analyzers.trace.link`) needs, so a trace recorded on a GPU
machine can be analysed later on a laptop with pandas alone.

Three steps, each in its own module: `read_trace_bytes` (`analyzers.trace.read`)
gets the JSON text in bounded time and memory whatever the file is;
`decode_frame` (`analyzers.trace.decode`) parses it with msgspec into exactly
the fields the frame needs, the fast path every real trace takes; and where the
text is junk that path will not guess about (a null timestamp, a name that is a
number, non-UTF-8 JSON), it is parsed again the plain way, `json.loads` and
`frame_from_events`, which gives the exact frame or the exact error. Turning
parsed values into typed columns is `analyzers.trace.columns`, shared by both.
"""
from __future__ import annotations

import gc
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from analyzers.errors import ParameterError
from analyzers.trace.columns import categorical, floats, id_columns
from analyzers.trace.decode import decode_frame
from analyzers.trace.read import DEFAULT_MAX_BYTES, FIX, TraceFormatError, read_trace_bytes

__all__ = ["DEFAULT_MAX_BYTES", "TRACE_COLUMNS", "TraceFormatError", "load_trace", "frame_from_events"]

# Column order of the frame `load_trace` returns.
TRACE_COLUMNS: tuple[str, ...] = (
    "name", "cat", "ph", "pid", "tid", "ts_us", "dur_us",
    "correlation", "external_id", "stream", "device", "bytes", "flow_id",
)

_NAN = math.nan
_NO_ARGS = (_NAN,) * 5
UNFINISHED_DUR = -1.0  # what torch.profiler writes for a CPU event still open when profiling stopped


def load_trace(path: str | os.PathLike, max_bytes: int | None = None) -> pd.DataFrame:
    """Read a Kineto trace (`.json` or `.json.gz`, detected by content) into a DataFrame.

    Columns, and why each has its type:
    - `name`, `cat`, `ph`: categoricals, because a trace repeats a few thousand
      kernel and op names hundreds of thousands of times.
    - `pid`, `tid`: categoricals of *strings*, because Kineto mixes integer ids
      with labels such as "Spans"; they are identifiers, compared for equality
      (same thread), never used as numbers.
    - `ts_us`, `dur_us`: float64 microseconds as Kineto writes them (a numeric
      string such as "12.5" is read as its number); `dur_us` is NaN for events
      without a duration (flows, instants, metadata, a null or NaN `dur`, and -1,
      torch.profiler's mark for an event still open when profiling stopped).
    - `correlation` (links a device event to its launch call), `external_id`,
      `stream`, `device`, `bytes` (memcpy/memset size) from `args`, and
      `flow_id` (the `id` of `ac2g` flow events, the fallback link): nullable
      Int64, because most events lack them and 0 is a valid id.

    Also accepts Chrome's JSON Array Format (a bare list of events), which
    Perfetto opens too. `max_bytes` (default `DEFAULT_MAX_BYTES`, 2 GiB) caps
    the JSON text, decompressed: a larger file or a gzip that expands past it is
    refused after reading at most that much. Raises TraceFormatError, one
    sentence, for anything that is not a sound trace: a missing, unreadable or
    special file, empty, truncated or corrupt data, nesting too deep to parse, a
    timestamp or duration that is not a number, a negative or infinite duration.
    """
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ParameterError("max_bytes", max_bytes, "must be a whole number of bytes, at least 1")
    path = Path(path)
    data = read_trace_bytes(path, limit)
    if not data or (len(data) < 64 and not data.strip()):
        raise TraceFormatError(f"{path} is empty; {FIX}.")
    with _no_gc():
        try:
            frame = decode_frame(data)
            if frame is None:  # junk the fast path will not guess about: the plain way is exact
                frame = _plain_frame(data, str(path))
        except RecursionError:
            raise TraceFormatError(f"{path} nests JSON arrays or objects deeper than Python can parse (a trace "
                                   f"nests a few levels), so it is corrupt or not a trace; {FIX}.") from None
    return _checked(frame, str(path))


def _plain_frame(data: bytes | bytearray, source: str) -> pd.DataFrame:
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" ({exc.msg} at byte {exc.pos})" if isinstance(exc, json.JSONDecodeError) else ""
        raise TraceFormatError(f"{source} is not valid JSON{where}, so it is truncated or not a trace; "
                               f"{FIX}.") from None
    if isinstance(doc, dict):
        events = doc.get("traceEvents")
        if not isinstance(events, list):
            raise TraceFormatError(f"{source} is JSON but has no 'traceEvents' list, so it is not a Chrome/Kineto "
                                   f"trace; {FIX}.")
    elif isinstance(doc, list):
        events = doc
    else:
        raise TraceFormatError(f"{source} holds a JSON {type(doc).__name__}, not a trace object; {FIX}.")
    return frame_from_events(events, source=source)


def _checked(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The frame with torch.profiler's -1 (unfinished) durations as missing; refuses corrupt times.

    A negative duration other than -1, or an infinite one, cannot be measured time: kept, it
    would subtract from (or swamp) every sum it joins, so it is one sentence naming the event.
    Checked on the frame, once, so that both parse paths obey the same rule.
    """
    dur = frame["dur_us"].to_numpy()
    unfinished = dur == UNFINISHED_DUR
    if unfinished.any():
        dur = dur.copy()
        dur[unfinished] = _NAN
        frame["dur_us"] = dur
    ts = frame["ts_us"].to_numpy()
    for column, values, bad in (("dur", dur, (dur < 0) | np.isinf(dur)), ("ts", ts, np.isinf(ts))):
        if bad.any():
            i = int(np.argmax(bad))
            raise TraceFormatError(f"{source}: {_event(i, frame['name'].iloc[i])} has '{column}' "
                                   f"{values[i]:g}, which no clock measures, so the trace is corrupt; re-record it "
                                   f"or remove that event.")
    return frame


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic collector: parsing allocates millions of acyclic objects, and
    each generation-2 pass rescans all of them (measured: ~20% of the parse time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def frame_from_events(events: list, source: str = "trace") -> pd.DataFrame:
    """The `load_trace` frame for an in-memory list of Chrome trace event dicts."""
    if not events:
        return _empty_frame()
    try:
        # One pass building row tuples, then a C-level transpose: measured ~40% faster than one
        # comprehension per column. Missing numbers default to NaN, not None, because numpy
        # converts a float-only sequence about 3x faster.
        rows = [
            (e.get("name", ""), e.get("cat", ""), e.get("ph", ""), e.get("pid", ""), e.get("tid", ""),
             e.get("ts", _NAN), e.get("dur", _NAN), e.get("id", _NAN), e.get("args"))
            for e in events
        ]
    except AttributeError:
        raise TraceFormatError(f"{source}: 'traceEvents' holds an entry that is not a JSON object; {FIX}.") from None
    names, cats, phs, pids, tids, ts, dur, flow_ids, args = zip(*rows, strict=True)
    del rows
    try:
        arg_rows = [
            (a.get("correlation", _NAN), a.get("External id", _NAN), a.get("stream", _NAN), a.get("device", _NAN),
             a.get("bytes", _NAN)) if a else _NO_ARGS
            for a in args
        ]
    except AttributeError:  # `args` that is not an object: rare junk, checked only when present
        arg_rows = [_arg_row(a) if isinstance(a, dict) else _NO_ARGS for a in args]
    del args
    correlation, external_id, stream, device, nbytes = zip(*arg_rows, strict=True)
    del arg_rows
    return pd.DataFrame({
        "name": categorical(names),
        "cat": categorical(cats),
        "ph": categorical(phs),
        "pid": categorical(pids, as_str=True),
        "tid": categorical(tids, as_str=True),
        "ts_us": _float_column(ts, "ts", source, names),
        "dur_us": _float_column(dur, "dur", source, names),
        **id_columns(correlation, external_id, stream, device, nbytes, flow_ids),
    })


def _arg_row(a: dict) -> tuple:
    return (a.get("correlation", _NAN), a.get("External id", _NAN), a.get("stream", _NAN), a.get("device", _NAN),
            a.get("bytes", _NAN))


def _empty_frame() -> pd.DataFrame:
    frame = frame_from_events([{}])
    return frame.iloc[0:0]


def _float_column(values: tuple | list, key: str, source: str, names: tuple) -> np.ndarray:
    parsed = floats(values)
    if parsed is None:  # find the culprit only now: the common path pays nothing for the message
        i = next(i for i, value in enumerate(values) if floats([value]) is None)
        raise TraceFormatError(f"{source}: {_event(i, names[i])} has '{key}' {_short(values[i])}, which is not a "
                               f"number; {FIX}.")
    return parsed


def _event(i: int, name: object) -> str:
    """How an error points at one event: its place in the list (as a JSON path) and its name."""
    return f"traceEvents[{i}] ({_short(name)})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
