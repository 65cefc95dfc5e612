"""One Perfetto trace of a tensor-parallel prefill: every rank's trace on rank 0's clock.

Each rank of a TP run traces its own prefill; side by side they show which rank reached each
collective late. The merged file keeps every event of every rank, and to open cleanly in Perfetto
(tests/test_perfetto_rules.py states the rules) it:

- puts all of rank r's events in one process, pid `PID_BASE + r`, named `rank r` and sorted by r:
  Kineto's pids are OS pids and device indices that repeat across ranks, so rank folders would
  otherwise land in one another's processes. The rank's own processes (python, the GPU, our
  `ttft-profile` tracks, telemetry) become threads of it, each thread named after its old process
  (`ttft-profile: components`); a tid two old processes share is given a free one, so no two
  threads meet on one track. The old per-process metadata (names, labels, sort indices) is
  replaced, not kept, as it would collide;
- shifts time in integer nanoseconds: rank r's absolute time (its `baseTimeNanoseconds` + ts) plus
  `offsets_ns[r]` (the launcher's measure of what puts it on rank 0's clock), then time zero moves to
  the whole second at or before the first event, as `analyzers.trace.export` writes every trace.
  A shift by whole nanoseconds keeps every slice nested as it was; each value goes out as the
  microsecond double both Perfetto importers read back as that nanosecond (`ns_to_us`);
- offsets flow ids (`ac2g` launch-to-kernel arrows, any `s`/`t`/`f`) by rank times one stride above
  the largest id, so an arrow of rank 0 never binds to a kernel of rank 1.
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import NamedTuple

from analyzers.atomic import write_bytes
from analyzers.errors import InputError
from analyzers.trace.export import ns_to_us, repair_nesting, to_ns
from analyzers.trace.read import DEFAULT_MAX_BYTES, FIX, TraceFormatError, read_trace_bytes

__all__ = ["PID_BASE", "MergedTrace", "merge_rank_traces", "rank_pid"]

# Above Linux's largest pid and tid (PID_MAX_LIMIT, 2**22), so a rank's process never shares an id
# with a thread the traces name (tid 0 on a track means tid = pid to Perfetto).
PID_BASE = 1 << 24
FLOWS = ("s", "t", "f")
_PROCESS_META = ("process_name", "process_labels", "process_sort_index", "process_uptime_seconds")


class MergedTrace(NamedTuple):
    """The merged file, the ranks in it, and the ranks that had no trace to merge."""

    path: Path
    ranks: list[int]
    missing: list[int]


def rank_pid(rank: int) -> int:
    """The process id rank `rank` has in a merged trace."""
    return PID_BASE + rank


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read(path: Path, max_bytes: int) -> dict:
    """A rank's trace as {"traceEvents": [...], ...}; Chrome's bare-list form is accepted too."""
    try:
        data = json.loads(bytes(read_trace_bytes(path, max_bytes)))
    except ValueError as exc:  # bad JSON, bad UTF-8
        raise TraceFormatError(f"{path} is not JSON ({exc}); {FIX}.") from None
    except RecursionError:
        raise TraceFormatError(f"{path} nests JSON deeper than Python can parse; {FIX}.") from None
    if isinstance(data, list):
        data = {"traceEvents": data}
    events = data.get("traceEvents") if isinstance(data, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise TraceFormatError(f"{path} has no list of trace events (traceEvents); {FIX}.")
    return data


def _base_ns(data: dict, path: Path) -> int:
    base = data.get("baseTimeNanoseconds", 0) or 0
    if not _number(base):
        raise TraceFormatError(f"{path}: baseTimeNanoseconds holds {json.dumps(base)[:40]}, not a number; {FIX}.")
    return int(base)


def _key(e: dict) -> tuple:
    """(old pid, old tid) as hashable values: junk ids (a list, an object) are compared as their text."""
    tid = e.get("tid")
    return str(e.get("pid")), tid if tid is None or isinstance(tid, (int, float, str)) else str(tid)


def _on_thread(e: dict) -> bool:
    """The event has a thread track: not a process- or global-scope instant, which Perfetto puts elsewhere."""
    return "tid" in e and not (e.get("ph") in ("i", "I") and e.get("s") in ("g", "p"))


def _threads(events: list[dict], pid: int) -> dict[tuple, int]:
    """(old pid, old tid) -> tid in the rank's process: the old tid where free, else the next unused one."""
    def track(tid: int) -> int:
        return pid if tid == 0 else tid  # Perfetto's rule: tid 0 is the process's own track

    keys = list(dict.fromkeys(_key(e) for e in events if _on_thread(e)))
    wanted = [int(k[1]) if _number(k[1]) and float(k[1]).is_integer() else None for k in keys]
    spare = max([t for t in wanted if t is not None] + [0]) + 1
    taken, out = set(), {}
    for key, tid in zip(keys, wanted, strict=True):
        if tid is None or track(tid) in taken:
            while spare in taken or spare == pid:
                spare += 1
            tid = spare
        out[key] = tid
        taken.add(track(tid))
    return out


def _names(events: list[dict]) -> tuple[dict[str, str], dict[str, float]]:
    """The rank's old process names and sort indices, by old pid (as text)."""
    names, order = {}, {}
    for e in events:
        if e.get("ph") == "M" and isinstance(e.get("args"), dict):
            if e.get("name") == "process_name":
                names[str(e.get("pid"))] = str(e["args"].get("name", ""))
            elif e.get("name") == "process_sort_index" and _number(e["args"].get("sort_index")):
                order[str(e.get("pid"))] = float(e["args"]["sort_index"])
    return names, order


def _dropped(e: dict) -> bool:
    """Per-process metadata that would collide in the rank's one process (replaced by `_thread_meta`)."""
    return e.get("ph") == "M" and e.get("name") in (*_PROCESS_META, "thread_sort_index")


class _BadTime(ValueError):
    """A slice whose ts or dur is no number of microseconds (the caller names the file)."""


def _ns(value) -> int | None:
    """Kineto microseconds (a number, or a numeric string as some writers quote them) as integer ns."""
    try:
        number = float(value) if isinstance(value, str) else value
        return to_ns(number) if _number(number) and math.isfinite(number) else None
    except ValueError:
        return None


def _move(e: dict, pid: int, tid: int | None, shift_ns: int, flow_offset: int, rank: int) -> None:
    """One event into the rank's process, its times integer ns on the merged clock, its flow id the rank's own."""
    if tid is not None:
        e["tid"] = tid
    e["pid"] = pid
    ts, dur = _ns(e.get("ts")), _ns(e.get("dur"))
    if e.get("ph") == "X" and (ts is None or ("dur" in e and dur is None)):
        raise _BadTime(f"the slice {str(e.get('name'))[:40]!r} has ts {e.get('ts')!r} and dur {e.get('dur')!r}, "
                       "not numbers of microseconds")
    if ts is not None:
        e["ts"] = ts + shift_ns
    if dur is not None:
        e["dur"] = max(dur, 0)  # -1: torch.profiler's mark for a slice still open at the end, which Perfetto drops
    if e.get("ph") in FLOWS and "id" in e:
        e["id"] = e["id"] + flow_offset if _number(e["id"]) else f"rank{rank}:{e['id']}"


def _thread_meta(rank: int, tids: dict[tuple, int], names: dict[str, str], order: dict[str, float],
                 named: set[int]) -> list[dict]:
    """The rank's process name and sort index; a name for each thread without one; threads kept in their old
    processes' order (ours, then telemetry, then Kineto's), so a rank reads as its own trace did."""
    pid = rank_pid(rank)
    meta = [{"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": f"rank {rank}"}},
            {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": rank}}]
    def place(item: tuple) -> tuple:
        (old_pid, old_tid), tid = item
        return order.get(old_pid, 0.0), old_tid if _number(old_tid) else math.inf, tid

    by_order = sorted(tids.items(), key=place)
    for index, ((old_pid, old_tid), tid) in enumerate(by_order):
        if tid not in named:
            name = f"{names.get(old_pid, 'process ' + old_pid)}: thread {old_tid}"
            meta.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
            named.add(tid)
        meta.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": index}})
    return meta


def _rank_events(events: list[dict], rank: int, shift_ns: int, flow_offset: int) -> list[dict]:
    """Rank `rank`'s events in its own process, times in integer ns on the merged clock."""
    pid = rank_pid(rank)
    names, order = _names(events)
    kept = [dict(e) for e in events if not _dropped(e)]
    tids = _threads(kept, pid)
    named = set()
    for e in kept:
        old_pid = str(e.get("pid"))
        _move(e, pid, (tids[_key(e)] if _on_thread(e) else 0) if "tid" in e else None, shift_ns, flow_offset, rank)
        if e.get("name") == "thread_name" and e.get("ph") == "M" and "tid" in e and isinstance(e.get("args"), dict):
            e["args"] = {**e["args"], "name": f"{names.get(old_pid, 'process ' + old_pid)}: {e['args'].get('name')}"}
            named.add(e["tid"])
    return _thread_meta(rank, tids, names, order, named) + kept


def _flow_stride(traces: dict[int, dict]) -> int:
    ids = [e["id"] for data in traces.values() for e in data["traceEvents"]
           if e.get("ph") in FLOWS and _number(e.get("id"))]
    return int(max(ids, default=0)) + 1


def _present(traces: dict[int, Path | None], offsets_ns: dict[int, int]) -> tuple[list[int], list[int]]:
    present = sorted(r for r, p in traces.items() if p is not None and Path(p).exists())
    missing = sorted(r for r in traces if r not in present)
    if not present:
        raise InputError(f"no rank has a trace to merge (ranks {', '.join(map(str, missing)) or 'none'}); "
                         "profile the TP run without --no-trace.")
    for rank in present:
        if not (isinstance(offsets_ns.get(rank), int) and not isinstance(offsets_ns.get(rank), bool)):
            raise InputError(f"rank {rank} has a trace but no clock offset in whole nanoseconds "
                             f"({offsets_ns.get(rank)!r}); pass offsets_ns for every rank.")
    return present, missing


def merge_rank_traces(traces: dict[int, Path | None], offsets_ns: dict[int, int], out: str | Path,
                      max_bytes: int | None = None) -> MergedTrace:
    """Merge the ranks' traces into one gzip JSON at `out`, written atomically; see the module docstring.

    A rank whose path is None or does not exist is left out and listed in `missing` (a --no-trace
    rank, or one that died); a trace that exists but cannot be read is a TraceFormatError. Each trace
    is read within `max_bytes` of JSON (default `DEFAULT_MAX_BYTES`), the guard every trace read has.
    """
    out = Path(out)
    present, missing = _present(traces, offsets_ns)
    data = {r: _read(Path(traces[r]), max_bytes or DEFAULT_MAX_BYTES) for r in present}
    bases = {r: _base_ns(data[r], Path(traces[r])) for r in present}
    stride = _flow_stride(data)
    events: list[dict] = []
    for rank in present:
        try:
            events += _rank_events(data[rank]["traceEvents"], rank, bases[rank] + offsets_ns[rank], rank * stride)
        except _BadTime as exc:
            raise TraceFormatError(f"{traces[rank]}: {exc}; {FIX}.") from None
    times = [e["ts"] for e in events if type(e.get("ts")) is int]
    zero = min(times, default=0) // 1_000_000_000 * 1_000_000_000
    for e in events:
        if type(e.get("ts")) is int:
            e["ts"] -= zero
    repair_nesting(events)  # a no-op on our own traces; a raw Kineto trace may overlap
    for e in events:
        for key in ("ts", "dur"):
            if type(e.get(key)) is int:
                e[key] = ns_to_us(e[key])
    first = data[present[0]]
    merged = {k: first[k] for k in ("schemaVersion", "displayTimeUnit") if k in first}
    merged.update({"baseTimeNanoseconds": zero, "traceName": out.name, "traceEvents": events, "ttft_profile_tp": {
        "ranks": present, "missing_ranks": missing, "clock_offsets_ns": {str(r): offsets_ns[r] for r in present},
        "rank_metadata": {str(r): {k: v for k, v in data[r].items() if k not in ("traceEvents", "traceName")}
                          for r in present}}})
    write_bytes(out, gzip.compress(json.dumps(merged, separators=(",", ":")).encode(), compresslevel=6))
    return MergedTrace(out, present, missing)
