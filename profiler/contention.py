"""What else the machine was doing while the timed repeats ran.

A TTFT measured on a machine that other work is using is that machine's
number, not the model's: the repeats queue behind other processes, are
preempted, or (in a VM) lose their CPU to another guest. The spread of the
repeats shows some of this, but a uniformly slow run has a small spread, so
the run also records what the operating system says about contention over
exactly the window of the measured repeats:

- `load1`: the 1-minute load average (`os.getloadavg`) at the window's end,
  with `cpus`, the CPUs this process may use (`os.sched_getaffinity`);
- `own_cpus`: CPU-seconds this process used per second of the window
  (`resource.getrusage` user + system), so a reader can subtract our own
  threads from the load;
- `nivcsw_per_s`: this process's involuntary context switches per second
  (`ru_nivcsw`): each one is a thread of ours taken off a CPU it wanted;
- `others_busy_share`: the share of all CPU time that was busy but not ours,
  from `/proc/stat` deltas minus our own usage (None where /proc/stat is
  absent, counts a different set of CPUs than we may use, or the window is
  too short for its 1/CLK_TCK resolution);
- `steal_share`: the share of CPU time a hypervisor gave to another guest
  (`/proc/stat` steal; None where absent).

Only the standard library: the probe reads a few counters twice and does not
run while the repeats run, so it cannot perturb them. Judging the readings is
the analysis side's job (`analyzers.noise`).
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

PROC_STAT = "/proc/stat"
# /proc/stat counts in 1/CLK_TCK s per CPU; below this many ticks in the window a share is mostly rounding
MIN_TICKS = 50


@dataclass(frozen=True)
class Reading:
    """The counters at one instant."""

    wall_s: float
    own_cpu_s: float
    nivcsw: int
    cpu_ticks: tuple[int, ...] | None  # the aggregate `cpu` line of /proc/stat, or None
    stat_cpus: int | None  # the per-CPU lines of /proc/stat


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _proc_stat(path: str) -> tuple[tuple[int, ...] | None, int | None]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None, None
    total = next((line.split()[1:] for line in lines if line.startswith("cpu ")), None)
    per_cpu = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    try:
        return (tuple(int(v) for v in total) if total else None), per_cpu or None
    except ValueError:
        return None, None


def read(stat_path: str = PROC_STAT) -> Reading:
    """The counters now: wall clock, this process's CPU time and involuntary switches, /proc/stat."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    ticks, stat_cpus = _proc_stat(stat_path)
    return Reading(time.perf_counter(), usage.ru_utime + usage.ru_stime, usage.ru_nivcsw, ticks, stat_cpus)


def _shares(before: Reading, after: Reading, own_cpu_s: float, cpus: int) -> dict:
    """others_busy_share and steal_share from the /proc/stat deltas, or None with the reason."""
    none = {"others_busy_share": None, "steal_share": None}
    if before.cpu_ticks is None or after.cpu_ticks is None:
        return {**none, "proc_stat": "absent"}
    if after.stat_cpus != cpus:
        return {**none, "proc_stat": f"counts {after.stat_cpus} CPUs, this process may use {cpus}"}
    delta = [b - a for a, b in zip(before.cpu_ticks, after.cpu_ticks, strict=False)]
    total = sum(delta[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    if total < MIN_TICKS:
        return {**none, "proc_stat": f"window too short ({total} ticks)"}
    idle = delta[3] + delta[4]
    steal = delta[7] if len(delta) > 7 else 0
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    busy_s = (total - idle - steal) * tick_s
    return {"others_busy_share": max(0.0, busy_s - own_cpu_s) / (total * tick_s),
            "steal_share": steal / total if len(delta) > 7 else None, "proc_stat": "ok"}


def contention(before: Reading, after: Reading, load1: float | None = None, cpus: int | None = None) -> dict:
    """The readings over [before, after] as Run.contention: plain numbers, None where unknown."""
    cpus = cpus or usable_cpus()
    if load1 is None:
        try:
            load1 = os.getloadavg()[0]
        except OSError:
            load1 = None
    window = max(after.wall_s - before.wall_s, 1e-9)
    own = max(0.0, after.own_cpu_s - before.own_cpu_s)
    return {"window_s": window, "cpus": cpus, "load1": load1, "own_cpus": own / window,
            "nivcsw": after.nivcsw - before.nivcsw, "nivcsw_per_s": (after.nivcsw - before.nivcsw) / window,
            **_shares(before, after, own, cpus)}
