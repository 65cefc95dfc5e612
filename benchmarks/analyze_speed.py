"""How fast, and in how much memory, a large Kineto trace is parsed, linked and tabulated.

Builds a trace of >= 200,000 events by repeating the recorded V100 trace
(../shared/external-traces/v100_ddp_rank0.json.gz) with timestamps and ids
shifted per copy, and its user annotations renamed to ttft/ ranges so that
`link` does real range work. Then times the three stages of `analyze_trace`
(load_trace, link, report_tables: every table `analyze` shows) and measures
peak memory in a fresh child process. Prints ratios (events/s against the
200,000 target, peak memory / uncompressed JSON size against the 10x target),
never asserts.

    .venv/bin/python benchmarks/analyze_speed.py [--events 200000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import gc
import gzip
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzers.trace.link import link  # noqa: E402
from analyzers.trace.load import load_trace  # noqa: E402
from analyzers.trace.report import report_tables  # noqa: E402

SOURCE = ROOT.parent / "shared" / "external-traces" / "v100_ddp_rank0.json.gz"
TARGET_EVENTS_PER_S = 200_000
TARGET_MEMORY_RATIO = 10.0

# Annotation -> ttft label, so that nested ranges (forward > DDP.forward > broadcast) exercise
# the innermost-range and self-time logic the way an instrumented prefill would.
RELABEL = {
    "## forward ##": "ttft/embedding",
    "DistributedDataParallel.forward": "ttft/attention",
    "nccl:broadcast": "ttft/other/broadcast",
    "## backward ##": "ttft/mlp",
    "nccl:all_reduce": "ttft/other/all_reduce",
    "## optimizer ##": "ttft/sampling",
    "Optimizer.step#SGD.step": "ttft/lm_head",
}


def build_trace(copies: int, out: Path) -> tuple[int, int]:
    """Write `copies` shifted repeats of the V100 trace to `out` (plain JSON); return (events, bytes)."""
    doc = json.loads(gzip.decompress(SOURCE.read_bytes()))
    events = doc["traceEvents"]
    timed = [e["ts"] for e in events if isinstance(e.get("ts"), (int, float))]
    span = max(timed) - min(timed) + 1_000.0
    corr_step = 1 + max(e.get("args", {}).get("correlation", 0) for e in events)
    flow_step = 1 + max(e.get("id", 0) for e in events if isinstance(e.get("id"), int))
    step = max(corr_step, flow_step)  # ac2g flow ids equal correlation ids: shift both alike
    ext_step = 1 + max(e.get("args", {}).get("External id", 0) for e in events)
    merged = []
    for k in range(copies):
        for e in events:
            if e.get("ph") == "M" and k:
                continue  # metadata once is enough
            e2 = dict(e)
            if isinstance(e2.get("ts"), (int, float)):
                e2["ts"] = e2["ts"] + k * span
            if isinstance(e2.get("id"), int):
                e2["id"] = e2["id"] + k * step
            if e2.get("cat") == "user_annotation" and e2.get("name") in RELABEL:
                e2["name"] = RELABEL[e2["name"]]
            args = e2.get("args")
            if isinstance(args, dict) and ("correlation" in args or "External id" in args):
                args = dict(args)
                if "correlation" in args:
                    args["correlation"] += k * step
                if "External id" in args:
                    args["External id"] += k * ext_step
                e2["args"] = args
            merged.append(e2)
    doc["traceEvents"] = merged
    text = json.dumps(doc).encode()
    out.write_bytes(text)
    return len(merged), len(text)


def analyse(path: Path) -> dict[str, float]:
    """One full pass; seconds per stage."""
    t0 = time.perf_counter()
    frame = load_trace(path)
    t1 = time.perf_counter()
    linked = link(frame)
    t2 = time.perf_counter()
    report_tables(linked)
    t3 = time.perf_counter()
    return {"load": t1 - t0, "link": t2 - t1, "tables": t3 - t2}


def _peak_rss_kib() -> int:
    """VmHWM (peak resident set) of this process; unlike ru_maxrss it starts afresh at exec."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_memory(path: Path) -> None:
    """Run in a fresh process so that neither the builder's objects nor earlier passes count."""
    before_kib = _peak_rss_kib()
    tracemalloc.start()
    report_tables(link(load_trace(path)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after_kib = _peak_rss_kib()
    print(json.dumps({"tracemalloc_peak": peak, "rss_growth": (after_kib - before_kib) * 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="minimum events in the built trace")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child-memory", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        child_memory(args.child_memory)
        return
    if not SOURCE.exists():
        sys.exit(f"{SOURCE} is missing; this benchmark needs the shared external traces.")
    per_copy = len(json.loads(gzip.decompress(SOURCE.read_bytes()))["traceEvents"])
    copies = -(-args.events // per_copy)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "big.json"
        n_events, n_bytes = build_trace(copies, plain)
        packed = Path(tmp) / "big.json.gz"
        packed.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=6))
        gc.collect()
        print(f"trace: {n_events:,} events ({copies} copies of {SOURCE.name}), "
              f"{n_bytes / 2**20:.1f} MiB JSON, {packed.stat().st_size / 2**20:.1f} MiB gzipped")
        analyse(plain)  # warm imports, regex cache and page cache
        for label, path in (("json", plain), ("json.gz", packed)):
            runs = [analyse(path) for _ in range(args.repeats)]
            stages = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rate = n_events / sum(stages.values())
            print(f"{label:8s} load {stages['load']:.3f}s  link {stages['link']:.3f}s  tables {stages['tables']:.3f}s  "
                  f"-> {rate:,.0f} events/s = {rate / TARGET_EVENTS_PER_S:.2f}x target")
        for label, path in (("json", plain), ("json.gz", packed)):
            result = subprocess.run([sys.executable, __file__, "--child-memory", str(path)],
                                    capture_output=True, text=True, check=True)
            memory = json.loads(result.stdout.strip().splitlines()[-1])
            ratios = {key: memory[key] / n_bytes for key in memory}
            print(f"{label:8s} peak memory / uncompressed JSON: tracemalloc {ratios['tracemalloc_peak']:.1f}x "
                  f"({memory['tracemalloc_peak'] / 2**20:.0f} MiB), RSS growth {ratios['rss_growth']:.1f}x "
                  f"({memory['rss_growth'] / 2**20:.0f} MiB); budget {TARGET_MEMORY_RATIO:.0f}x")


if __name__ == "__main__":
    main()
