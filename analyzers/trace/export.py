"""Make a raw torch.profiler trace into the file we ship: `trace.json.gz`, clean for Perfetto.

Adds a process `ttft-profile` with two tracks (component spans and TTFT phases) and a `telemetry`
process of counters, names every process and thread, and makes every slice nest the way
Perfetto's JSON importer requires (tests/test_perfetto_rules.py states its rules and emulates it):

- Time is integer nanoseconds from the moment the raw trace is read: Kineto prints ns-exact
  microseconds, each is read once, and every edge we add (the `forward` phase runs from h2d's end
  to sampling's start) is integer arithmetic. Time zero moves to the trace's first second, so
  every value is small enough for a double to hold each nanosecond. Float addition of microseconds put ends 1 ns past
  where they belong, and Perfetto drops or moves a slice that ends 1 ns after its parent.
- On the way out each ns value is written as a microsecond double that both the current importer
  (its own parser, then `llround(us * 1000)`) and older ones (`strtod`, then truncation) turn
  back into the same integer, so a slice's end, `ts + dur` in ns, is where we computed it.
- A slice that still breaks nesting (a producer's genuine overlap) moves to an overflow thread
  of its own, named after its thread, rather than being clipped or left for Perfetto to drop.
- Process and thread ids are integers (Perfetto interns a string id as a small number that can
  collide with a real one), counter names are plain words, and no temporary path (the raw trace
  Kineto wrote, its folder) is left in `traceName` or any other metadata.
"""
from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

from analyzers.atomic import write_bytes
from analyzers.vocabulary import COLOURS, DEVICE_TIMING, LABEL_PREFIX, PHASES

COMPONENT_TID, PHASE_TID = 1, 2
_NOT_CLEAN = re.compile(r"[^A-Za-z0-9 _.\-]+")


def _x_events(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("ph") == "X" and "ts" in e]


def _own_pid(events: list[dict]) -> int:
    pids = [e["pid"] for e in events if isinstance(e.get("pid"), int) and not isinstance(e.get("pid"), bool)]
    return max(pids, default=0) + 1


def _meta(pid, tid, name: str, value: str) -> dict:
    return {"ph": "M", "name": name, "pid": pid, "tid": tid, "args": {"name": value}}


def _colour(label: str) -> str:
    # Chrome's cname palette is fixed; keep our colour as an argument for tools that read it.
    component = label[len(LABEL_PREFIX):].split("/")[0]
    return f"#{COLOURS.get(component, 0xBDBDBD):06x}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def to_ns(us) -> int:
    """A Kineto microsecond value as integer ns: exact for its 3-decimal values below 2**43 us (100 days)."""
    return round(float(us) * 1000)


def _events_to_ns(events: list[dict]) -> None:
    for e in events:
        for key in ("ts", "dur"):
            if _is_number(e.get(key)):
                e[key] = to_ns(e[key])


def rebase(events: list[dict], data: dict) -> int:
    """Move time zero to the whole second at or before the first event; return the shift in ns.

    Kineto's microseconds count from its `baseTimeNanoseconds` (months back) or, in older
    releases, from 1970: past 2**43 us (about 100 days) a double cannot hold every nanosecond, and
    past 2**53 ns an importer's `us * 1000` cannot either. Seconds since the trace began fit
    exactly. `baseTimeNanoseconds` grows by the shift, so base + ts, the absolute time, is kept.
    """
    starts = [e["ts"] for e in events if isinstance(e.get("ts"), int) and not isinstance(e.get("ts"), bool)]
    shift = min(starts, default=0) // 1_000_000_000 * 1_000_000_000
    if shift <= 0:
        return 0
    for e in events:
        if isinstance(e.get("ts"), int) and not isinstance(e.get("ts"), bool):
            e["ts"] -= shift
    data["baseTimeNanoseconds"] = int(data.get("baseTimeNanoseconds") or 0) + shift
    return shift


def _llround(value: float) -> int:
    whole = math.floor(abs(value))
    near = whole + (1 if abs(value) - whole >= 0.5 else 0)
    return near if value >= 0 else -near


def _current_importer_ns(text: str) -> int | None:
    """Perfetto's JSON parser (integer part + fraction digits / 10^digits), then CoerceToTs."""
    whole, _, digits = text.lstrip("-").partition(".")
    if not whole.isdigit() or (digits and not digits.isdigit()):
        return None  # an exponent: not a form the fast check reads
    value = float(int(whole)) + (float(int(digits)) / float(10 ** len(digits)) if digits else 0.0)
    value = -value if text.startswith("-") else value
    return int(value) * 1000 if value == math.trunc(value) else _llround(value * 1000.0)


def _reads_back(us: float, ns: int) -> bool:
    """Both importers turn the text json writes for `us` (its repr) into exactly `ns`."""
    return int(us * 1000.0) == ns and _current_importer_ns(repr(us)) == ns


def ns_to_us(ns: int) -> float:
    """The microsecond double written for `ns`: the nearest one, or the closest neighbour that reads back exactly."""
    us = ns / 1000
    if 0 <= ns < 2**52:  # repr(us) is then the 3-decimal text of ns: both importers checked by arithmetic
        whole, frac = divmod(ns, 1000)
        if int(us * 1000.0) == ns and (frac == 0 or _llround((whole + frac / 1000) * 1000.0) == ns):
            return us
    elif _reads_back(us, ns):
        return us
    up = down = us
    for _ in range(64):
        up, down = math.nextafter(up, math.inf), math.nextafter(down, -math.inf)
        for candidate in (up, down):
            if _reads_back(candidate, ns):
                return candidate
    return us  # not reached below 2**53 ns; the nearest double is then the best there is


def _events_to_us(events: list[dict]) -> None:
    for e in events:
        for key in ("ts", "dur"):
            if isinstance(e.get(key), int) and not isinstance(e.get(key), bool):
                e[key] = ns_to_us(e[key])


def our_tracks(events: list[dict], device_edges: list[int] | None = None) -> list[dict]:
    """Component spans and TTFT phases, copied from the `ttft/` ranges in the trace (times in integer ns).

    On a GPU the `ttft/` CPU ranges mark when the host launched each phase, not when the device ran
    it; `device_edges` (the five phase edges from CUDA events, in the trace's ns) place the phases
    where the device reached them instead."""
    ranges = sorted((e for e in _x_events(events) if str(e.get("name", "")).startswith(LABEL_PREFIX)),
                    key=lambda e: (e["ts"], -e.get("dur", 0)))
    if not ranges:
        return []
    pid = _own_pid(events)
    out = [_meta(pid, 0, "process_name", "ttft-profile"),
           _meta(pid, COMPONENT_TID, "thread_name", "components"),
           _meta(pid, PHASE_TID, "thread_name", "TTFT phases"),
           {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": -1}}]
    for e in ranges:
        out.append({"ph": "X", "cat": "ttft_component", "name": e["name"], "pid": pid, "tid": COMPONENT_TID,
                    "ts": e["ts"], "dur": e.get("dur", 0), "args": {"colour": _colour(e["name"])}})
    phases = _phases(ranges) if device_edges is None else [
        (name, lo, hi - lo) for name, lo, hi in zip(PHASES, device_edges, device_edges[1:], strict=False)]
    for name, ts, dur in phases:
        out.append({"ph": "X", "cat": "ttft_phase", "name": name, "pid": pid, "tid": PHASE_TID,
                    "ts": ts, "dur": max(dur, 0)})
    return out


def _phases(ranges: list[dict]) -> list[tuple[str, int, int]]:
    """The TTFT phases from the host's `ttft/` ranges: the truth where the host does the work (CPU)."""
    by_name = {e["name"]: e for e in ranges}
    h2d, sampling, d2h = (by_name.get(LABEL_PREFIX + n) for n in ("h2d", "sampling", "d2h"))
    phases = []
    if h2d:
        phases.append(("h2d", h2d["ts"], h2d.get("dur", 0)))
    if h2d and sampling:
        start = h2d["ts"] + h2d.get("dur", 0)  # integer ns: forward ends exactly where sampling starts
        phases.append(("forward", start, sampling["ts"] - start))
    if sampling:
        phases.append(("sampling", sampling["ts"], sampling.get("dur", 0)))
    if d2h:
        phases.append(("d2h", d2h["ts"], d2h.get("dur", 0)))
    return phases


def device_phase_edges(metadata: dict | None, base_ns: int) -> list[int] | None:
    """The traced prefill's phase edges from CUDA events (profiler metadata), in the trace's ns; None on a CPU."""
    marks = (metadata or {}).get("phase_marks_unix_ns")
    if (metadata or {}).get("phase_clock") != DEVICE_TIMING or not isinstance(marks, list) or len(marks) != 5:
        return None
    return [int(m) - base_ns for m in marks]


def _tracks(events: list[dict]) -> dict[tuple, list[dict]]:
    """X events per thread track, in the importer's order: by ts, the longer first at equal ts, else file order."""
    tracks: dict[tuple, list[dict]] = {}
    for e in _x_events(events):
        tracks.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    for track in tracks.values():
        track.sort(key=lambda e: (e["ts"], -e.get("dur", 0)))  # stable: file order breaks ties
    return tracks


def nesting_violations(events: list[dict]) -> list[tuple[dict, dict]]:
    """(parent, child) pairs on one track where the child starts inside the parent and ends after it.

    Perfetto's rule, exactly (no tolerance: times are integer ns): an open slice closes when it
    ended before the next starts, or at the same instant unless both are instants.
    """
    bad = []
    for track in _tracks(events).values():
        stack: list[tuple[int, int, dict]] = []  # (start, end, event)
        for e in track:
            ts, dur = e["ts"], e.get("dur", 0)
            while stack and (stack[-1][1] < ts or (stack[-1][1] == ts and not (stack[-1][0] == ts and dur == 0))):
                stack.pop()
            if stack and ts < stack[-1][1] < ts + dur:
                bad.append((stack[-1][2], e))
                continue
            stack.append((ts, ts + dur, e))
    return bad


def _thread_names(events: list[dict]) -> dict[tuple, str]:
    return {(e.get("pid"), e.get("tid")): str(e.get("args", {}).get("name"))
            for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}


def repair_nesting(events: list[dict]) -> int:
    """Move each slice that breaks nesting to an overflow thread beside its own; return how many moved.

    The overflow thread gets an unused integer tid in the same process and the name of the thread
    it came from plus "(overlapping slices)"; slices that overlap there move on again.
    """
    moved, overflow, names = 0, {}, _thread_names(events)
    while bad := nesting_violations(events):
        for _parent, child in bad:
            key = (child.get("pid"), child.get("tid"))
            if key not in overflow:
                used = [e.get("tid") for e in events if e.get("pid") == key[0] and isinstance(e.get("tid"), int)]
                tid = max(used + list(overflow.values()), default=0) + 1
                overflow[key] = tid
                label = names.get(key, f"thread {key[1]}")
                names[(key[0], tid)] = f"{label} (overlapping slices)"
                events.append(_meta(key[0], tid, "thread_name", names[(key[0], tid)]))
            child["tid"] = overflow[key]
            moved += 1
    return moved


def integer_ids(events: list[dict]) -> None:
    """Give slices' string pids and tids integer ids, named by the string (Kineto's `Spans` process, say).

    Perfetto interns a string id as a small number, which can land on a real pid or stream id.
    """
    pids = {e["pid"] for e in _x_events(events) if isinstance(e.get("pid"), str)}
    next_pid = _own_pid(events)
    pid_map = {name: next_pid + i for i, name in enumerate(sorted(pids))}
    tids = sorted({(e.get("pid"), e["tid"]) for e in _x_events(events) if isinstance(e.get("tid"), str)},
                  key=lambda k: (str(k[0]), k[1]))
    tid_map: dict[tuple, int] = {}
    for pid, tid in tids:
        used = [e.get("tid") for e in events if e.get("pid") == pid and isinstance(e.get("tid"), int)]
        tid_map[(pid, tid)] = max(used + [t for (p, _), t in tid_map.items() if p == pid], default=0) + 1
    if not pid_map and not tid_map:
        return
    named = {(e.get("pid"), e.get("tid"), e.get("name")) for e in events if e.get("ph") == "M"}
    for pid, tid in tid_map:
        if (pid, tid, "thread_name") not in named:
            events.append(_meta(pid, tid, "thread_name", tid))
    for pid in pid_map:
        if not any(p == pid and n == "process_name" for p, _t, n in named):
            events.append(_meta(pid, 0, "process_name", pid))
    for e in events:
        pid, tid = e.get("pid"), e.get("tid")
        if (pid, tid) in tid_map:
            e["tid"] = tid_map[(pid, tid)]
        if pid in pid_map:
            e["pid"] = pid_map[pid]


def name_everything(events: list[dict]) -> None:
    """Every process and thread that holds slices gets a name record (Perfetto shows bare ids otherwise)."""
    named_p = {e.get("pid") for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
    named_t = {(e.get("pid"), e.get("tid")) for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
    for pid, tid in list(_tracks(events)):
        if pid not in named_p:
            events.append(_meta(pid, 0, "process_name", f"process {pid}"))
            named_p.add(pid)
        if (pid, tid) not in named_t:
            events.append(_meta(pid, tid, "thread_name", f"thread {tid}"))
            named_t.add((pid, tid))


def clean_name(name: str) -> str:
    """A counter name Perfetto shows as is: the last part of anything path-like, plain characters only."""
    last = str(name).replace("\\", "/").rstrip("/").split("/")[-1]
    return _NOT_CLEAN.sub("_", last).strip(" _")[:80] or "value"


def telemetry_counters(events: list[dict], base_ns: int, samples: list[dict]) -> list[dict]:
    """Telemetry as "C" counter tracks of a process of their own, over the trace's own time span (integer ns)."""
    slices = _x_events(events)
    if not samples or not slices:
        return []
    from analyzers.telemetry.samples import counter_events

    lo = min(e["ts"] for e in slices)
    hi = max(e["ts"] + e.get("dur", 0) for e in slices)
    pid = _own_pid(events) + 1  # after ours (our_tracks takes max + 1)
    counters = counter_events(samples, base_ns, pid, window_ns=(int(base_ns + lo), int(base_ns + hi)))
    if not counters:
        return []
    for c in counters:
        c["ts"] = to_ns(c["ts"])
        c["name"] = clean_name(c["name"])
        c["args"] = {clean_name(k): v for k, v in c["args"].items()}
    return [_meta(pid, 0, "process_name", "telemetry"),
            {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": -2}}, *counters]


def _scrub(value, replacements: list[tuple[str, str]]):
    """`value` with each temporary path replaced (strings inside dicts and lists too)."""
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, replacements) for v in value]
    return value


def _temporary_paths(raw_path: Path, out_path: Path) -> list[tuple[str, str]]:
    """The raw trace's path as given and resolved (-> the shipped file's name), then its folder (-> nothing)."""
    out = [(str(p), out_path.name) for p in (raw_path, raw_path.resolve()) if "/" in str(p) or "\\" in str(p)]
    folder = str(raw_path.resolve().parent)
    if len(folder) > 1:  # never "/": removing it would rewrite every path-like string
        out += [(folder + "/", ""), (folder, "")]
    return out + [(raw_path.name, out_path.name)]


def finalize_trace(raw_path: str | Path, out_path: str | Path, metadata: dict | None = None,
                   counters: list[dict] | None = None) -> dict:
    """Read a raw Chrome trace, add our tracks and telemetry counters, make it Perfetto-clean, write it
    gzipped and atomically."""
    raw_path, out_path = Path(raw_path), Path(out_path)
    data = json.loads(raw_path.read_text())
    events = data["traceEvents"]
    _events_to_ns(events)
    telemetry = telemetry_counters(events, int(data.get("baseTimeNanoseconds", 0)), counters or [])
    base_ns = int(data.get("baseTimeNanoseconds", 0))
    events.extend(our_tracks(events, device_phase_edges(metadata, base_ns)))
    events.extend(telemetry)
    rebase(events, data)
    integer_ids(events)
    moved = repair_nesting(events)
    name_everything(events)
    _events_to_us(events)
    replacements = _temporary_paths(raw_path, out_path)
    for key in [k for k in data if k != "traceEvents"]:
        data[key] = _scrub(data[key], replacements)
    for e in events:
        if e.get("ph") == "M" and "args" in e:
            e["args"] = _scrub(e["args"], replacements)
    data["traceName"] = out_path.name  # Kineto names the file it wrote: our temporary raw trace
    if metadata:
        data["ttft_profile"] = metadata
    write_bytes(out_path, gzip.compress(json.dumps(data, separators=(",", ":")).encode(), compresslevel=6))
    return {"events": len(events), "moved_to_overlap_tracks": moved}
