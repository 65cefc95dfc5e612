"""The fast path of `load_trace`: msgspec decodes a Kineto trace straight into typed events.

Why msgspec (measured on the benchmark's 206k-event, 38 MiB trace; 2 busy cores, CPython 3.11):
the standard library's `json.loads` takes 0.43 s and orjson's 0.24 s, and both build a dict
for every event and every `args`, most of whose keys (`Input Dims`, `Call stack`, ...) the
frame never reads. A msgspec decoder typed with the nine fields the frame needs parses the
same bytes in 0.14 s (0.17 s sharing strings, see `_Shared`): it skips every other key
without building anything, and stores each event as a slotted Struct with no dict at all.
The whole `load_trace` went from 0.66 s (stdlib with an object_hook that built the columns
while parsing) to 0.45 s, at the same peak memory (RSS growth 111 MiB against 113).

The types are the ones Kineto writes (strings, numbers, integer or string ids). Anything
else (a null timestamp, a name that is a number, an `args` that is a list, JSON that is not
UTF-8) fails validation, and `decode_frame` returns None: the caller then parses the file
the plain way, which gives the exact frame or the exact error for such junk. So this path
never has to guess, and never gives a frame the plain path would not.
"""
from __future__ import annotations

import math
from collections import defaultdict
from itertools import chain
from typing import Literal

import msgspec
import numpy as np
import pandas as pd
from msgspec.structs import astuple

from analyzers.trace.columns import id_columns, kind_categorical

__all__ = ["decode_frame"]

_NAN = math.nan
# Kineto's ids are integers; AMD's (roctracer) write some, such as `bytes`, as decimal strings.
_Id = int | str


class _Args(msgspec.Struct, gc=False, frozen=True):
    """The five `args` the frame keeps; missing ones are NaN, as in `frame_from_events`.

    gc=False: Structs of numbers and strings cannot form cycles, and untracked objects cost the
    collector nothing (measured: the cyclic collector's passes were ~20% of a stdlib parse)."""

    correlation: _Id = _NAN
    external_id: _Id = msgspec.field(default=_NAN, name="External id")
    stream: _Id = _NAN
    device: _Id = _NAN
    bytes: _Id = _NAN


_NO_ARGS = _Args()  # shared by every event without `args` (frozen, so sharing is safe)


class _Shared(str):
    """A name or category: one object per distinct value, however often it repeats.

    A trace repeats a few thousand names hundreds of thousands of times, and a Struct field
    typed `str` would hold a fresh string for each (measured: names, categories and phases took
    36 MiB of the 86 MiB of the benchmark trace's Structs). Typed `_Shared`, each value goes
    through the decoder's `dec_hook` (`_decoder`), which keeps the first copy and lets the others
    go at once: 50 MiB in all (phases are shared as a Literal, below), for ~0.03 s more parse
    time, of which ~0.025 s comes back later (a shared string's hash is computed once, and there
    are fewer objects to free). msgspec calls the hook only
    for this field type, and checks that it returns a `_Shared`, so the hook hands back this
    subclass; `decode_frame` turns the few hundred distinct values back into plain `str`.
    """


# Every phase the Trace Event Format defines. As a Literal, each decodes to one shared object
# with no call into `_decoder`'s hook (measured: 0.02 s less than sharing it through the hook); an
# event of any other phase is not a trace event, and the file goes to the plain path.
_Phase = Literal["B", "E", "X", "i", "I", "C", "b", "n", "e", "s", "t", "f", "P", "N", "O", "D", "M", "V", "v", "R",
                 "c", "(", ")"]


class _Event(msgspec.Struct, gc=False):
    name: _Shared = ""
    cat: _Shared = ""
    ph: _Phase = ""
    pid: _Id = ""
    tid: _Id = ""
    ts: float = _NAN
    dur: float = _NAN
    id: _Id = _NAN
    args: _Args = _NO_ARGS


class _Trace(msgspec.Struct, gc=False):
    traceEvents: list[_Event]


def _decoder() -> msgspec.json.Decoder:
    """A decoder for a trace object or Chrome's JSON Array Format (a bare list of events),
    sharing strings through a table of its own, so that nothing outlives the one parse."""
    table: dict[str, _Shared] = {}

    def share(kind: type, value: object) -> object:
        if value.__class__ is not str:  # a number where a name should be: msgspec refuses it
            return value
        found = table.get(value)
        if found is None:
            found = table[value] = _Shared(value)
        return found

    return msgspec.json.Decoder(_Trace | list[_Event], dec_hook=share)


_EVENT_FIELDS, _ARGS_FIELDS = len(_Event.__struct_fields__), len(_Args.__struct_fields__)
_KIND_COLUMNS = (("name", False), ("cat", False), ("ph", False), ("pid", True), ("tid", True))  # (column, as_str)


def decode_frame(data: bytes | bytearray) -> pd.DataFrame | None:
    """The `load_trace` frame, or None where only the plain path is exact (junk, no events, not JSON).

    A bytearray is emptied once parsed (only then: the plain path needs it after a None), so
    that the text is not held while the frame is built; measured on the benchmark trace, the
    peak of a load fell from 122 to 88 MiB (tracemalloc), the text being 38 of it.

    After the parse, every per-event step is C-level, never a Python loop, and the Structs are
    walked once: `astuple` lays every event's fields end to end in one object array, whose
    columns are then strided views (the same for `args`). Measured on the benchmark trace,
    parse 0.17 s, then ~0.2 s for everything else; one `map(attrgetter(field))` per column
    took 0.20 s more, because each pass over 200k Structs scattered over ~100 MiB pays its
    cache misses again, and slicing a flat list took 0.04 s more than views, because every
    slice touches every element's reference count.

    The kind of each event, its (name, cat, ph, pid, tid), is numbered through a dict whose
    missing-key factory is its own length (the first new kind gets 0, the next 1, ...);
    `kind_categorical` splits the few hundred kinds back into the five categoricals.
    """
    try:
        doc = _decoder().decode(data)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return None
    events = doc.traceEvents if isinstance(doc, _Trace) else doc
    del doc
    n = len(events)
    if not n:
        return None  # the plain path's empty frame, with its dtypes
    if isinstance(data, bytearray):
        data.clear()
    table = _rows(events, _EVENT_FIELDS)  # name, cat, ph, pid, tid, ts, dur, id, args
    del events  # the Structs go now: the table holds what the frame needs
    args = _rows(table[:, 8], _ARGS_FIELDS)  # correlation, External id, stream, device, bytes
    kinds: defaultdict = defaultdict()
    kinds.default_factory = kinds.__len__
    kind_codes = np.fromiter(map(kinds.__getitem__, zip(*table[:, :5].T, strict=True)), dtype=np.int32, count=n)
    kinds = [(str(name), str(cat), str(ph), pid, tid) for name, cat, ph, pid, tid in kinds]  # _Shared -> str
    columns = {column: kind_categorical(kinds, kind_codes, i, as_str)
               for i, (column, as_str) in enumerate(_KIND_COLUMNS)}
    return pd.DataFrame({
        **columns,
        "ts_us": table[:, 5].astype(np.float64),
        "dur_us": table[:, 6].astype(np.float64),
        **id_columns(*args.T, table[:, 7]),
    })


def _rows(structs, width: int) -> np.ndarray:
    """Every Struct's fields, one row each, as an (n, width) object array."""
    flat = chain.from_iterable(map(astuple, structs))
    return np.fromiter(flat, dtype=object, count=width * len(structs)).reshape(len(structs), width)
