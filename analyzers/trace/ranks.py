"""A folder of per-rank traces (one Kineto file per rank, as torch.distributed runs write
them): which rank each file is, and how the ranks compare.

In a data- or tensor-parallel step every rank waits for the slowest at each
collective, so the question a folder answers is which rank is late and how much
of each rank's device time is communication (time in collectives, much of it
waiting for the others).

Which rank a file is: a `rank<N>` in its name (`rank0.json.gz`, `trainer_rank1.json`),
else the `distributedInfo.rank` that Kineto writes at the top of the file. The name
wins because traces get copied and renamed (a copy keeps its `distributedInfo`), and
`tensorboard_trace_handler`'s names (`host_pid.<ts>.pt.trace.json`) carry no rank.
Reading `distributedInfo` costs one decompressed megabyte at most: Kineto writes the
top-level fields before `traceEvents`, so only that head is searched and only that
one object is parsed; a file whose `traceEvents` come first (re-serialised by
another tool) is searched whole, still without parsing its events.
"""
from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from analyzers.errors import InputError
from analyzers.trace.link import LinkedTrace, link
from analyzers.trace.load import TraceFormatError, load_trace
from analyzers.trace.read import DEFAULT_MAX_BYTES, read_trace_bytes

__all__ = ["COMMUNICATION_CLASS", "RANK_COLUMNS", "analyze_ranks", "rank_files", "trace_rank"]

RANK_COLUMNS = ["rank", "file", "kernels", "device_ms", "communication_ms", "communication_share", "step_ms", "lag_ms",
                "slowest"]
COMMUNICATION_CLASS = "communication"  # the kernel class of collectives (analyzers/data/kernel_classes.json)
TRACE_SUFFIXES = (".json", ".json.gz")
HEAD_BYTES = 1 << 20  # Kineto's header (device properties, distributedInfo) is a few kB

_RANK_IN_NAME = re.compile(r"(?<![a-z])rank[_-]?(\d+)(?!\d)", re.IGNORECASE)
_GZIP_MAGIC = b"\x1f\x8b"
_KEY, _EVENTS = b'"distributedInfo"', b'"traceEvents"'


def rank_files(folder: str | Path) -> list[tuple[int, Path]]:
    """(rank, file) for every trace in `folder`, by rank; JSON files that are not traces are skipped.

    InputError (one sentence) when `folder` is not a folder, holds no trace, holds a trace
    whose rank can be told neither from its name nor from its `distributedInfo`, or two
    files claim one rank.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; pass the folder that holds one trace file per rank.")
    found: dict[int, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(TRACE_SUFFIXES)):
        rank = _rank_from_name(path.name)
        if rank is None:
            is_trace, rank = _read_header(path)
            if not is_trace:
                continue  # a run.json or summary beside the traces
            if rank is None:
                raise InputError(f"{path} names no rank and has no distributedInfo.rank; rename it with its rank, "
                                 f"as in rank{len(found)}.json.gz.")
        if rank in found:
            raise InputError(f"{found[rank].name} and {path.name} in {folder} both claim rank {rank}; "
                             "keep one trace per rank in the folder.")
        found[rank] = path
    if not found:
        raise InputError(f"{folder} holds no trace files (.json or .json.gz with traceEvents); "
                         "pass the folder torch.profiler wrote one trace per rank into.")
    return sorted(found.items())


def trace_rank(path: str | Path) -> int | None:
    """The rank of one trace file: from its name, else its `distributedInfo.rank`, else None."""
    path = Path(path)
    rank = _rank_from_name(path.name)
    return rank if rank is not None else _read_header(path)[1]


def _rank_from_name(name: str) -> int | None:
    found = _RANK_IN_NAME.findall(name)
    return int(found[-1]) if found else None  # the last one: "rank0_copy_of_rank3" names rank 3


def _read_header(path: Path) -> tuple[bool, int | None]:
    """(is a Kineto/Chrome trace, its distributedInfo.rank or None), without parsing its events."""
    head = _read(path, HEAD_BYTES)
    events_at = head.find(_EVENTS)
    if events_at < 0 and len(head) == HEAD_BYTES:  # a header over 1 MiB, or a re-serialised file: read all
        head = _read(path, -1)
        events_at = head.find(_EVENTS)
    is_trace = events_at >= 0 or head.lstrip().startswith(b"[")
    at = head.find(_KEY)
    if at < 0 and is_trace and len(head) == HEAD_BYTES:  # distributedInfo after traceEvents: look in the rest
        head = _read(path, -1)
        at = head.rfind(_KEY)
    if at < 0:
        return is_trace, None
    return is_trace, _rank_at(head, at + len(_KEY))


def _rank_at(text: bytes, at: int) -> int | None:
    """The `rank` of the JSON object after `"distributedInfo"` at `at` (past its colon), parsed alone."""
    colon = text.find(b":", at)
    start = text.find(b"{", colon)
    if colon < 0 or start < 0:
        return None
    try:
        info, _ = json.JSONDecoder().raw_decode(text[start:].decode("utf-8", errors="replace"))
    except (json.JSONDecodeError, RecursionError):
        return None  # cut off by the head limit, junk or absurdly nested: no rank rather than a wrong one
    rank = info.get("rank") if isinstance(info, dict) else None
    return rank if isinstance(rank, int) and not isinstance(rank, bool) and rank >= 0 else None


def _read(path: Path, size: int) -> bytes:
    """The first `size` bytes of the file's text (all for -1, within the trace size limit), gunzipped when it is gzip."""
    if size < 0:  # the whole text: bounded like any trace load, so a gzip bomb in a rank folder stops at the limit
        return bytes(read_trace_bytes(path, DEFAULT_MAX_BYTES))
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise TraceFormatError(f"{path} cannot be read ({exc.strerror}); check that it exists and is readable.") from None
    try:
        with raw:
            magic = raw.read(2)
            raw.seek(0)
            if magic != _GZIP_MAGIC:
                return raw.read(size)
            with gzip.GzipFile(fileobj=raw) as text:
                return text.read(size)
    except (EOFError, OSError, zlib.error):
        raise TraceFormatError(f"{path} is a truncated or corrupt gzip file; copy it again whole or re-record it.") from None


def _link_file(path: Path) -> LinkedTrace:
    return link(load_trace(path))


def analyze_ranks(folder: str | Path, analyze: Callable[[Path], LinkedTrace] = _link_file) -> pd.DataFrame:
    """One row per rank of a folder of per-rank traces, by rank; columns `RANK_COLUMNS`.

    - `kernels`: device events (kernels, memcpy, memset) and `device_ms` their summed time;
    - `communication_ms`: time in kernels of class `communication` (NCCL/RCCL collectives),
      `communication_share` its part of `device_ms`;
    - `step_ms`: wall time on the device, first device event start to last end;
    - `lag_ms`: `step_ms` minus the fastest rank's; `slowest`: True on the rank with the
      largest `step_ms` (the lowest such rank on a tie): the one the others wait for.
    `analyze` turns one file into a LinkedTrace (default: `link(load_trace(path))`), so a caller
    may cache or parallelise it.
    """
    rows = []
    for rank, path in rank_files(folder):
        dev = analyze(path).device
        start = dev["ts_us"].to_numpy(np.float64)
        dur = np.nan_to_num(dev["dur_us"].to_numpy(np.float64))
        device_us = float(dur.sum())
        comm_us = float(dur[(dev["kernel_class"] == COMMUNICATION_CLASS).to_numpy(bool)].sum())
        wall_us = float((start + dur).max() - start.min()) if len(dev) else 0.0
        rows.append({"rank": rank, "file": path.name, "kernels": len(dev), "device_ms": device_us / 1e3,
                     "communication_ms": comm_us / 1e3,
                     "communication_share": comm_us / device_us if device_us > 0 else 0.0, "step_ms": wall_us / 1e3})
    table = pd.DataFrame(rows)
    table["lag_ms"] = table["step_ms"] - table["step_ms"].min()
    table["slowest"] = np.arange(len(table)) == int(table["step_ms"].to_numpy().argmax())
    return table[RANK_COLUMNS]
