"""Read a Kineto (torch.profiler) Chrome-trace JSON into one pandas DataFrame.

One row per trace event, in file order. The frame is the only thing the
linking step (`analyzers.trace.link`) needs, so a trace recorded on a GPU
machine can be analysed later on a laptop with pandas alone. Turning the parsed
values into typed columns is `analyzers.trace.columns`, shared by both paths.

Speed and memory matter here: a long prefill trace holds hundreds of thousands
of events. With the standard library, `json.loads` parses the file once with an
`object_hook` (`_row_hook`) that reads each event's fields the moment its dict
is built, while it is still in the CPU cache, and lets the dict go at once;
the columns are then C-level slices of one flat list. No pandas operation runs
per event. A file that this fast path cannot turn into exactly the frame the
plain path gives (junk such as an event without "ph" or a name that is an
object) is parsed again the plain way, by `json.loads` and `frame_from_events`.
"""
from __future__ import annotations

import gc
import gzip
import json
import math
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from analyzers.errors import InputError
from analyzers.trace.columns import categorical, floats, id_columns, kind_categorical

__all__ = ["TRACE_COLUMNS", "TraceFormatError", "load_trace", "frame_from_events"]

# Column order of the frame `load_trace` returns.
TRACE_COLUMNS: tuple[str, ...] = (
    "name", "cat", "ph", "pid", "tid", "ts_us", "dur_us",
    "correlation", "external_id", "stream", "device", "bytes", "flow_id",
)

_FIX = "pass a complete Kineto trace written by torch.profiler (export_chrome_trace or tensorboard_trace_handler)"
_GZIP_MAGIC = b"\x1f\x8b"
_NAN = math.nan
_NO_ARGS = (_NAN,) * 5


class TraceFormatError(InputError):
    """A trace file that cannot be read as a Kineto/Chrome trace; the message names the fix."""


def load_trace(path: str | os.PathLike) -> pd.DataFrame:
    """Read a Kineto trace (`.json` or `.json.gz`, detected by content) into a DataFrame.

    Columns, and why each has its type:
    - `name`, `cat`, `ph`: categoricals, because a trace repeats a few thousand
      kernel and op names hundreds of thousands of times.
    - `pid`, `tid`: categoricals of *strings*, because Kineto mixes integer ids
      with labels such as "Spans"; they are identifiers, compared for equality
      (same thread), never used as numbers.
    - `ts_us`, `dur_us`: float64 microseconds as Kineto writes them; `dur_us` is
      NaN for events without a duration (flows, instants, metadata).
    - `correlation` (links a device event to its launch call), `external_id`,
      `stream`, `device`, `bytes` (memcpy/memset size) from `args`, and
      `flow_id` (the `id` of `ac2g` flow events, the fallback link): nullable
      Int64, because most events lack them and 0 is a valid id.

    Also accepts Chrome's JSON Array Format (a bare list of events), which
    Perfetto opens too. Raises TraceFormatError for an empty, truncated,
    corrupt or non-trace file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TraceFormatError(f"{path} does not exist; {_FIX}.") from None
    except IsADirectoryError:
        raise TraceFormatError(f"{path} is a folder, not a trace file; pass the .json or .json.gz file inside it.") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error):
            raise TraceFormatError(f"{path} is a truncated or corrupt gzip file; copy it again whole or re-record it.") from None
    if not data or (len(data) < 64 and not data.strip()):
        raise TraceFormatError(f"{path} is empty; {_FIX}.")
    with _no_gc():
        loads = _json_loads()
        try:
            if loads is json.loads:
                try:
                    return _fast_frame(data)
                except _Irregular:
                    pass  # parse again below, the plain way, which gives the exact frame or error
            doc = loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _not_json(path, exc) from None
        # Free the text before building columns: peak is text + objects, not text + objects + frame.
        del data
        return _frame_from_doc(doc, str(path))


def _not_json(path: Path, exc: ValueError) -> TraceFormatError:
    where = f" ({exc.msg} at byte {exc.pos})" if isinstance(exc, json.JSONDecodeError) else ""
    return TraceFormatError(f"{path} is not valid JSON{where}, so it is truncated or not a trace; {_FIX}.")


class _Irregular(Exception):
    """The fast path met something it cannot turn into exactly the plain path's frame."""


_ROW = object()  # what `_row_hook` leaves in the event list in place of each event
_FIELDS = 9  # per event in `_row_hook`'s flat list: kind, ts, dur, id, then the 5 args fields
_KIND_COLUMNS = (("name", False), ("cat", False), ("ph", False), ("pid", True), ("tid", True))  # (column, as_str)


def _row_hook() -> tuple[Callable[[dict], object], list, dict, Callable[[], int]]:
    """`object_hook` for `_fast_frame`; also the flat list and the kinds it fills, and its event count.

    Why a hook (measured on the benchmark's 206k-event, 38 MiB trace; 2 cores, CPython 3.11):
    plain `json.loads` takes ~0.42 s, but then every pass over the 200k parsed dicts, which lie
    scattered over ~200 MiB, costs 15-25 ms in cache misses, and building the columns took ~0.45 s
    more, plus ~0.05 s to free the dicts. Read inside the hook, each dict is hot; the parse takes
    ~0.55 s and nothing is left to do but ~0.07 s of numpy. Load went from ~0.95 s to ~0.63 s, and
    the peak memory (tracemalloc) from 5.6x to 2.8x the JSON size.

    - An object with "ph" (an event) appends (kind, ts, dur, id, and correlation, External id,
      stream, device, bytes from its `args`) to `flat`, with the defaults of `frame_from_events`,
      and is replaced by _ROW. Column i is the slice flat[i::9]: measured 0.03 s with freeing,
      against 0.10 s for returning a tuple per event and transposing with zip(*rows); appending
      to one list per column in the hook was no faster than zip.
    - kind is the code of the event's (name, cat, ph, pid, tid) in `kinds` (~260 distinct in
      the benchmark trace): one dict lookup where a code per column took five; ~0.05 s less
      than per-column codes, ~0.08 s less than pd.factorize over 200k cold objects afterwards.
      `kind_categorical` splits the kinds back into the five categoricals.
    - Any other object (`args`, the top-level object, metadata) is returned as it is. An `args`
      is parsed before its event, so the event reads it while it is still hot.

    `_fast_frame` refuses (raises _Irregular for) whatever could make the frame differ from the
    plain path: an event anywhere but directly in the event list (the count: an `args` or a name
    that was itself an event), an entry that is not an event (no "ph", null, a number), and an
    unhashable name, cat, ph, pid or tid (a TypeError from the kinds lookup).
    """
    kinds: dict = {}
    kind_code = kinds.get
    flat: list = []
    extend = flat.extend
    get = dict.get
    nan = _NAN
    row = _ROW
    events = 0

    def hook(d: dict) -> object:
        nonlocal events
        if "ph" not in d:
            return d  # `args`, the top-level object, metadata: left as the plain path has them
        events += 1
        k = (get(d, "name", ""), get(d, "cat", ""), get(d, "ph", ""), get(d, "pid", ""), get(d, "tid", ""))
        kind = kind_code(k)
        if kind is None:
            kind = kinds[k] = len(kinds)
        a = get(d, "args")
        if a.__class__ is dict:
            extend((kind, get(d, "ts", nan), get(d, "dur", nan), get(d, "id", nan),
                    get(a, "correlation", nan), get(a, "External id", nan), get(a, "stream", nan),
                    get(a, "device", nan), get(a, "bytes", nan)))
        else:  # absent, or junk that the plain path also reads as no args
            extend((kind, get(d, "ts", nan), get(d, "dur", nan), get(d, "id", nan), nan, nan, nan, nan, nan))
        return row

    def made() -> int:
        return events

    return hook, flat, kinds, made


def _fast_frame(data: bytes) -> pd.DataFrame:
    """The `load_trace` frame through `_row_hook`; raises _Irregular where only the plain path is exact."""
    hook, flat, kinds, made = _row_hook()
    try:
        doc = json.loads(data, object_hook=hook)
    except TypeError:  # an unhashable name, pid, ...: the plain path shows it with str()
        raise _Irregular from None
    if isinstance(doc, dict):
        events = doc.get("traceEvents")
        if not isinstance(events, list):
            raise _Irregular
    elif isinstance(doc, list):
        events = doc
    else:
        raise _Irregular
    del doc
    n = len(events)
    if not n:
        return _empty_frame()
    # Every entry an event, and every event an entry: then flat holds them in file order.
    if made() != n or events.count(_ROW) != n or len(flat) != _FIELDS * n:
        raise _Irregular
    del events
    columns = [flat[i::_FIELDS] for i in range(_FIELDS)]
    del flat
    kind, ts, dur, flow_ids, correlation, external_id, stream, device, nbytes = columns
    del columns
    try:
        ts_us = np.fromiter(ts, dtype=np.float64, count=n)
        dur_us = np.fromiter(dur, dtype=np.float64, count=n)
    except (TypeError, ValueError, OverflowError):  # junk: the plain path tells NaN from error
        raise _Irregular from None
    del ts, dur
    kind_codes = np.fromiter(kind, dtype=np.int32, count=n)
    del kind
    frame = {column: kind_categorical(kinds, kind_codes, i, as_str) for i, (column, as_str) in enumerate(_KIND_COLUMNS)}
    return pd.DataFrame({
        **frame,
        "ts_us": ts_us,
        "dur_us": dur_us,
        **id_columns(correlation, external_id, stream, device, nbytes, flow_ids),
    })


def _frame_from_doc(doc: object, source: str) -> pd.DataFrame:
    if isinstance(doc, dict):
        events = doc.get("traceEvents")
        if not isinstance(events, list):
            raise TraceFormatError(f"{source} is JSON but has no 'traceEvents' list, so it is not a Chrome/Kineto trace; {_FIX}.")
    elif isinstance(doc, list):
        events = doc
    else:
        raise TraceFormatError(f"{source} holds a JSON {type(doc).__name__}, not a trace object; {_FIX}.")
    return frame_from_events(events, source=source)


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


def _json_loads() -> Callable[[bytes], object]:
    """orjson when installed (several times faster; optional, never required), else the stdlib."""
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads  # its JSONDecodeError subclasses json.JSONDecodeError


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
        raise TraceFormatError(f"{source}: 'traceEvents' holds an entry that is not a JSON object; {_FIX}.") from None
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
        "ts_us": _float_column(ts, "ts", source),
        "dur_us": _float_column(dur, "dur", source),
        **id_columns(correlation, external_id, stream, device, nbytes, flow_ids),
    })


def _arg_row(a: dict) -> tuple:
    return (a.get("correlation", _NAN), a.get("External id", _NAN), a.get("stream", _NAN), a.get("device", _NAN),
            a.get("bytes", _NAN))


def _empty_frame() -> pd.DataFrame:
    frame = frame_from_events([{}])
    return frame.iloc[0:0]


def _float_column(values: tuple | list, key: str, source: str) -> np.ndarray:
    parsed = floats(values)
    if parsed is None:
        raise TraceFormatError(f"{source}: an event's '{key}' is not a number; {_FIX}.")
    return parsed


