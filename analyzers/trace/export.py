"""Make a raw torch.profiler trace into the file we ship: `trace.json.gz`.

Adds a process `ttft-profile` with two tracks (component spans and TTFT
phases), names every process and thread, and repairs slices that do not
nest on their track (Perfetto draws those wrongly or drops them): a slice
that overlaps its parent's end is moved to an `overlap` track of its own
rather than silently clipped.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from analyzers.atomic import write_bytes
from analyzers.vocabulary import COLOURS, LABEL_PREFIX

# Float timestamps (us) printed by Kineto round to 1 ns; ends that differ by
# less than this are the same instant.
EPS_US = 1e-3
COMPONENT_TID, PHASE_TID = 1, 2


def _x_events(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("ph") == "X" and "ts" in e]


def _own_pid(events: list[dict]) -> int:
    pids = [e["pid"] for e in events if isinstance(e.get("pid"), int)]
    return max(pids, default=0) + 1


def _meta(pid, tid, name: str, value: str) -> dict:
    return {"ph": "M", "name": name, "pid": pid, "tid": tid, "args": {"name": value}}


def _colour(label: str) -> str:
    # Chrome's cname palette is fixed; keep our colour as an argument for tools that read it.
    component = label[len(LABEL_PREFIX):].split("/")[0]
    return f"#{COLOURS.get(component, 0xBDBDBD):06x}"


def our_tracks(events: list[dict]) -> list[dict]:
    """Component spans and TTFT phases, copied from the `ttft/` ranges in the trace."""
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
    by_name = {e["name"]: e for e in ranges}
    h2d, sampling, d2h = (by_name.get(LABEL_PREFIX + n) for n in ("h2d", "sampling", "d2h"))
    phases = []
    if h2d:
        phases.append(("h2d", h2d["ts"], h2d.get("dur", 0)))
    if h2d and sampling:
        start = h2d["ts"] + h2d.get("dur", 0)
        phases.append(("forward", start, sampling["ts"] - start))
    if sampling:
        phases.append(("sampling", sampling["ts"], sampling.get("dur", 0)))
    if d2h:
        phases.append(("d2h", d2h["ts"], d2h.get("dur", 0)))
    for name, ts, dur in phases:
        out.append({"ph": "X", "cat": "ttft_phase", "name": name, "pid": pid, "tid": PHASE_TID,
                    "ts": ts, "dur": max(dur, 0)})
    return out


def nesting_violations(events: list[dict]) -> list[tuple[dict, dict]]:
    """(parent, child) pairs on one track where the child starts inside the parent and ends after it."""
    bad = []
    for track in _tracks(events).values():
        stack: list[dict] = []
        for e in track:
            end = e["ts"] + e.get("dur", 0)
            while stack and stack[-1]["ts"] + stack[-1].get("dur", 0) <= e["ts"] + EPS_US:
                stack.pop()
            if stack and end > stack[-1]["ts"] + stack[-1].get("dur", 0) + EPS_US:
                bad.append((stack[-1], e))
                continue
            stack.append(e)
    return bad


def _tracks(events: list[dict]) -> dict[tuple, list[dict]]:
    tracks: dict[tuple, list[dict]] = {}
    for e in _x_events(events):
        tracks.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    for track in tracks.values():
        track.sort(key=lambda e: (e["ts"], -e.get("dur", 0)))
    return tracks


def repair_nesting(events: list[dict]) -> int:
    """Move each slice that breaks nesting to an `overlap` track beside its own; return how many moved."""
    moved = 0
    extra_meta = []
    while True:
        bad = nesting_violations(events)
        if not bad:
            break
        for _parent, child in bad:
            tid = child.get("tid")
            new_tid = f"{tid} overlap"
            extra_meta.append(_meta(child.get("pid"), new_tid, "thread_name", f"{tid} (overlapping slices)"))
            child["tid"] = new_tid
            moved += 1
    seen = set()
    for m in extra_meta:
        key = (m["pid"], m["tid"])
        if key not in seen:
            seen.add(key)
            events.append(m)
    return moved


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


def telemetry_counters(events: list[dict], base_ns: int, samples: list[dict]) -> list[dict]:
    """Telemetry as "C" counter tracks of a process of their own, over the trace's own time span."""
    from analyzers.telemetry.samples import counter_events

    slices = _x_events(events)
    if not samples or not slices:
        return []
    lo = min(e["ts"] for e in slices)
    hi = max(e["ts"] + e.get("dur", 0) for e in slices)
    pid = _own_pid(events) + 1  # after ours (our_tracks takes max + 1)
    window = (int(base_ns + lo * 1000), int(base_ns + hi * 1000))
    counters = counter_events(samples, base_ns, pid, window_ns=window)
    if not counters:
        return []
    return [_meta(pid, 0, "process_name", "telemetry"),
            {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": -2}}, *counters]


def finalize_trace(raw_path: str | Path, out_path: str | Path, metadata: dict | None = None,
                   counters: list[dict] | None = None) -> dict:
    """Read a raw Chrome trace, add our tracks and telemetry counters, repair it, write it gzipped and atomically."""
    data = json.loads(Path(raw_path).read_text())
    events = data["traceEvents"]
    telemetry = telemetry_counters(events, int(data.get("baseTimeNanoseconds", 0)), counters or [])
    events.extend(our_tracks(events))
    events.extend(telemetry)
    moved = repair_nesting(events)
    name_everything(events)
    if metadata:
        data["ttft_profile"] = metadata
    write_bytes(out_path, gzip.compress(json.dumps(data, separators=(",", ":")).encode(), compresslevel=6))
    return {"events": len(events), "moved_to_overlap_tracks": moved}
