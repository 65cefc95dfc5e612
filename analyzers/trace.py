"""Read a Kineto (torch.profiler) Chrome-trace JSON into one pandas DataFrame.

One row per trace event, in file order. The frame is the only thing the
attribution functions (`analyzers.attribute`) need, so a trace recorded on a
GPU machine can be analysed later on a laptop with pandas alone.

Speed and memory matter here: a long prefill trace holds hundreds of thousands
of events. The file is parsed once with `json.loads` and each column is built
from one pass over the events; no pandas operation runs per event.
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


class TraceFormatError(ValueError):
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
        try:
            doc = _json_loads()(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f" ({exc.msg} at byte {exc.pos})" if isinstance(exc, json.JSONDecodeError) else ""
            raise TraceFormatError(f"{path} is not valid JSON{where}, so it is truncated or not a trace; {_FIX}.") from None
        # Free the text before building columns: peak is text + objects, not text + objects + frame.
        del data
        return _frame_from_doc(doc, str(path))


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
        "name": _categorical(names),
        "cat": _categorical(cats),
        "ph": _categorical(phs),
        "pid": _categorical(pids, as_str=True),
        "tid": _categorical(tids, as_str=True),
        "ts_us": _float_column(ts, "ts", source),
        "dur_us": _float_column(dur, "dur", source),
        "correlation": _int_column(correlation),
        "external_id": _int_column(external_id),
        "stream": _int_column(stream),
        "device": _int_column(device),
        "bytes": _int_column(nbytes),
        "flow_id": _int_column(flow_ids),
    })


def _arg_row(a: dict) -> tuple:
    return (a.get("correlation", _NAN), a.get("External id", _NAN), a.get("stream", _NAN), a.get("device", _NAN),
            a.get("bytes", _NAN))


def _empty_frame() -> pd.DataFrame:
    frame = frame_from_events([{}])
    return frame.iloc[0:0]


def _categorical(values: tuple | list, as_str: bool = False) -> pd.Categorical:
    """Intern through pd.factorize on an object array (C hash table; categories in order of
    first use), then build the Categorical from codes, which skips pandas' own re-hashing.

    `as_str` turns the few distinct values into strings, for ids that mix 7 and "Spans".
    """
    objects = np.empty(len(values), dtype=object)
    objects[:] = values
    try:
        # pandas' C hash table: ~3x faster than a dict.setdefault loop on 200k values
        codes, uniques = pd.factorize(objects, sort=False)
    except TypeError:  # an unhashable name (a list or object): junk, but shown rather than refused
        return _categorical([str(v) for v in values], as_str)
    codes = codes.astype(np.int32)
    labels = list(uniques)
    if (codes < 0).any():  # factorize leaves None/NaN out; an explicit JSON null is shown as ""
        codes[codes < 0] = len(labels)
        labels.append("")
    if as_str or not all(isinstance(label, str) for label in labels):
        labels = ["" if label is None else str(label) for label in labels]
        if len(set(labels)) != len(labels):  # 7 and "7": the same thread in any viewer, so merge them
            merged = {label: i for i, label in enumerate(dict.fromkeys(labels))}
            codes = np.array([merged[label] for label in labels], dtype=np.int32)[codes]
            labels = list(merged)
    return pd.Categorical.from_codes(codes, categories=labels)


def _floats(values: tuple | list) -> np.ndarray | None:
    try:
        return np.fromiter(values, dtype=np.float64, count=len(values))
    except (TypeError, ValueError):
        pass
    try:
        return np.array(values, dtype=np.float64)  # slower, but turns an explicit JSON null into NaN
    except (TypeError, ValueError):
        return None


def _float_column(values: tuple | list, key: str, source: str) -> np.ndarray:
    floats = _floats(values)
    if floats is None:
        raise TraceFormatError(f"{source}: an event's '{key}' is not a number; {_FIX}.")
    return floats


def _int_column(values: tuple | list) -> pd.arrays.IntegerArray:
    # Via float64, where NaN marks a missing value; ids and byte counts stay below 2**53.
    floats = _floats(values)
    if floats is not None:
        missing = np.isnan(floats)
        whole = np.where(missing, 0.0, floats)
        if not (np.abs(whole) >= 2.0**53).any() and (whole == np.floor(whole)).all():
            return pd.arrays.IntegerArray(whole.astype(np.int64), missing)
    # Rare: hex strings ("0x1f"), huge ids or junk; parse what parses, the rest becomes missing.
    parsed = [_to_int(v) for v in values]
    missing = np.fromiter((v is None for v in parsed), dtype=bool, count=len(parsed))
    return pd.arrays.IntegerArray(np.array([0 if v is None else v for v in parsed], dtype=np.int64), missing)


def _to_int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**63 else None  # NaN is not an integer
    if isinstance(value, str):
        try:
            return _to_int(int(value, 0))
        except ValueError:
            return None
    return None
