"""How fast, and in how much memory, a large Kineto trace is parsed, linked and tabulated.

Builds a trace of >= 200,000 events by repeating the recorded V100 trace
(../shared/external-traces/v100_ddp_rank0.json.gz) with timestamps and ids
shifted per copy, and its user annotations renamed to ttft/ ranges so that
`link` does real range work. Then times the three stages of `analyze_trace`
(load_trace, link, report_tables: every table `analyze` shows) and measures
peak memory in a fresh child process. Prints ratios (events/s against the
200,000 target, peak memory / uncompressed JSON size against the 10x target),
never asserts.

Then the whole process against HolisticTraceAnalysis (HTA) on the same file: ours is
`ttft-profile analyze TRACE --json > /dev/null`, HTA's is loading the trace folder and
computing its kernel breakdown (`TraceAnalysis(trace_dir=...).get_gpu_kernel_breakdown()`);
wall time, CPU time and peak RSS of each child process, as ratios against the issue's targets (at
least 5x faster, at most a third of HTA's memory), and `ttft-profile --help` against 0.2 s.
HTA is installed once into benchmarks/.hta-venv, never into the project (`--no-hta` skips it).

    .venv/bin/python benchmarks/analyze_speed.py [--events 200000] [--repeats 3] [--no-hta]
"""
from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import resource
import shutil
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


def child_memory(path: Path, traced: bool) -> None:
    """Run in a fresh process so that neither the builder's objects nor earlier passes count.

    RSS and tracemalloc are measured in separate runs: tracemalloc keeps a record of every live
    allocation, which itself grows RSS with the number of live objects (measured: RSS growth read
    6.8x with tracemalloc on, 2.9x without, on the same load)."""
    before_kib = _peak_rss_kib()
    if traced:
        tracemalloc.start()
    report_tables(link(load_trace(path)))
    if traced:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(json.dumps({"tracemalloc_peak": peak}))
    else:
        print(json.dumps({"rss_growth": (_peak_rss_kib() - before_kib) * 1024}))


def measure_memory(path: Path) -> dict[str, int]:
    """tracemalloc peak and RSS growth of one load -> link -> tables, each in a fresh child."""
    found: dict[str, int] = {}
    for flag in ("--child-rss", "--child-tracemalloc"):
        result = subprocess.run([sys.executable, __file__, flag, str(path)], capture_output=True, text=True,
                                check=True)
        found.update(json.loads(result.stdout.strip().splitlines()[-1]))
    return found


# ------------------------------------------------------------ against HolisticTraceAnalysis

HTA_VENV = ROOT / "benchmarks" / ".hta-venv"  # git-ignored; HTA is never a dependency of the project
HTA_PACKAGE = "HolisticTraceAnalysis"
# What HTA does for the comparison: load the trace folder and compute its kernel breakdown.
HTA_CODE = ("import sys\n"
            "from hta.trace_analysis import TraceAnalysis\n"
            "TraceAnalysis(trace_dir=sys.argv[1]).get_gpu_kernel_breakdown(visualize=False)\n")
TARGET_SPEEDUP, TARGET_MEMORY_SHARE, TARGET_HELP_S = 5.0, 1 / 3, 0.2


def hta_python() -> Path | None:
    """The HTA venv's python, made on first use (python -m venv + pip install); None, with the reason
    printed, where it cannot be made (no network to the package index, no venv module)."""
    python = HTA_VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"installing {HTA_PACKAGE} into {HTA_VENV.relative_to(ROOT)} (once) ...", flush=True)
    for step in ([sys.executable, "-m", "venv", str(HTA_VENV)],
                 [str(python), "-m", "pip", "install", "--quiet", HTA_PACKAGE]):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
            print(f"  skipped: could not install {HTA_PACKAGE} ({reason})")
            shutil.rmtree(HTA_VENV, ignore_errors=True)
            return None
        (HTA_VENV / ".gitignore").write_text("*\n")  # git never sees the venv, whatever the root .gitignore says
    return python


# Runs a command and reports its wall time and peak RSS. It runs in its own small process because a
# child of this one would not do: Linux counts the parent's memory at fork into the child's
# ru_maxrss (measured: both tools "peaked" at this benchmark's own 341 MiB).
_MEASURE = (
    "import json, os, sys, time\n"
    "start = time.perf_counter()\n"
    "pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "with open(sys.argv[1], 'w') as out:\n"
    "    json.dump([time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,\n"
    "               os.waitstatus_to_exitcode(status)], out)\n"
)


def timed_child(command: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS bytes) of `command` run once, its output discarded.

    CPU time (user + system) is printed beside wall time because it moves less when other work
    shares the machine (measured on 2 busy cores: wall 1.0-1.9 s for the same run of ours)."""
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "stderr", "w+b") as errors:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-c", _MEASURE, str(report), *command], stdout=subprocess.DEVNULL,
                       stderr=errors, cwd=ROOT, env=env, check=True)
        wall, cpu, peak_kib, code = json.loads(report.read_text())
        if code:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(command[:4])} ... exited {code}: {' | '.join(tail)}")
    return wall, cpu, peak_kib * 1024  # ru_maxrss is in KiB on Linux


def compare_with_hta(trace: Path, repeats: int) -> None:
    """Whole process, ours (`ttft-profile analyze TRACE --json > /dev/null`) against HTA's load and
    kernel breakdown, on the same file: median wall time and peak RSS of `repeats` runs each."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ours_cmd = [sys.executable, "-m", "profiler.cli", "analyze", str(trace), "--json"]
    help_s = statistics.median(timed_child([sys.executable, "-m", "profiler.cli", "--help"], env)[0]
                               for _ in range(5))
    print(f"ttft-profile --help: {help_s:.3f}s (target < {TARGET_HELP_S}s)")
    python = hta_python()
    if python is None:
        return
    folder = trace.parent / "hta"  # HTA reads a folder of rank traces; this one holds only ours
    folder.mkdir(exist_ok=True)
    os.link(trace, folder / trace.name)  # the same file, not a copy: one page cache for both tools
    runs = [(timed_child(ours_cmd, env), timed_child([str(python), "-c", HTA_CODE, str(folder)]))
            for _ in range(repeats)]  # in turns, so that a busy spell on the machine slows both alike
    ours, hta = zip(*runs, strict=True)
    (ours_s, ours_cpu, ours_rss), (hta_s, hta_cpu, hta_rss) = (
        [statistics.median(run[i] for run in runs) for i in range(3)] for runs in (ours, hta))
    print(f"whole process   ours {ours_s:.2f}s  HTA {hta_s:.2f}s  -> {hta_s / ours_s:.1f}x faster "
          f"(target >= {TARGET_SPEEDUP:.0f}x); CPU time ours {ours_cpu:.2f}s  HTA {hta_cpu:.2f}s  -> "
          f"{hta_cpu / ours_cpu:.1f}x")
    print(f"peak RSS        ours {ours_rss / 2**20:.0f} MiB  HTA {hta_rss / 2**20:.0f} MiB  -> "
          f"{ours_rss / hta_rss:.2f} of HTA's (target <= {TARGET_MEMORY_SHARE:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="minimum events in the built trace")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-hta", action="store_true", help="skip the comparison with HolisticTraceAnalysis")
    parser.add_argument("--child-rss", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-tracemalloc", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_rss or args.child_tracemalloc:
        child_memory(args.child_rss or args.child_tracemalloc, traced=bool(args.child_tracemalloc))
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
            memory = measure_memory(path)
            ratios = {key: memory[key] / n_bytes for key in memory}
            print(f"{label:8s} peak memory / uncompressed JSON: tracemalloc {ratios['tracemalloc_peak']:.1f}x "
                  f"({memory['tracemalloc_peak'] / 2**20:.0f} MiB), RSS growth {ratios['rss_growth']:.1f}x "
                  f"({memory['rss_growth'] / 2**20:.0f} MiB); budget {TARGET_MEMORY_RATIO:.0f}x")
        if not args.no_hta:
            compare_with_hta(plain, args.repeats)


if __name__ == "__main__":
    main()
