"""Count a Kineto trace's kernels with nothing but json and gzip: the independent side of
`tests/test_external_expectations.py`.

It imports nothing from the project, on purpose: the figures it prints are what the
project's loader, linker and tables must reproduce, so they must not come from them.

    python tests/data/count_external.py TRACE.json.gz [TRACE ...]

prints, per trace, one JSON object: kernel count, kernel ms, memcpy ms, memset ms, unlinked
kernels, and the 20 kernel names with the most summed duration (with the CPU-op chains seen
around their launches, to help a reader judge each class; the judgement itself is written by
hand into `external_expectations.json`).
"""
from __future__ import annotations

import gzip
import json
import sys
from collections import Counter, defaultdict

# Which events are kernels: complete ("X") events whose category, lower-cased, is "kernel".
# Lower-casing because PyTorch < 1.10 wrote "Kernel"; the project's DEVICE_CATS makes the
# same choice (it compares lower-case and lists "kernel" as its only kernel category; the
# rest of DEVICE_CATS are copies and fills, counted separately below).
KERNEL_CATS = {"kernel"}
MEMCPY_CATS = {"gpu_memcpy", "memcpy"}
MEMSET_CATS = {"gpu_memset", "memset"}
# Host calls a kernel's correlation id points back to: CUDA runtime and driver calls (ROCm
# traces use the same "cuda_runtime" category for hip* calls), old spellings included.
LAUNCH_CATS = {"cuda_runtime", "cuda_driver", "runtime", "driver"}
TOP = 20


def read_events(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        data = json.load(fh)
    return data["traceEvents"] if isinstance(data, dict) else data


def category(event: dict) -> str:
    return str(event.get("cat", "")).lower()


def op_chain(ops_by_thread: dict, launch: dict) -> str:
    """The cpu_ops around a launch on its thread, outermost first, the innermost three at most
    (for the reader judging a class; not counted): 'aten::relu_ > aten::clamp_min_'."""
    around = [op for op in ops_by_thread.get((launch.get("pid"), launch.get("tid")), ())
              if op["ts"] <= launch["ts"] <= op["ts"] + op.get("dur", 0)]
    around.sort(key=lambda op: (op["ts"], -op.get("dur", 0)))
    return " > ".join(op["name"] for op in around[-3:]) or "(no op)"


def count(path: str) -> dict:
    events = [e for e in read_events(path) if e.get("ph") == "X"]
    kernels = [e for e in events if category(e) in KERNEL_CATS]
    launches: dict = {}
    for e in events:
        corr = e.get("args", {}).get("correlation")
        if category(e) in LAUNCH_CATS and corr is not None:
            launches.setdefault(corr, e)
    ops_by_thread = defaultdict(list)
    for e in events:
        if category(e) == "cpu_op":
            ops_by_thread[(e.get("pid"), e.get("tid"))].append(e)
    per_name: dict = defaultdict(lambda: [0.0, 0, Counter()])
    unlinked = 0
    for k in kernels:
        launch = launches.get(k.get("args", {}).get("correlation"))
        unlinked += launch is None
        entry = per_name[k["name"]]
        entry[0] += k["dur"]
        entry[1] += 1
        entry[2][op_chain(ops_by_thread, launch) if launch else "(unlinked)"] += 1
    top = sorted(per_name.items(), key=lambda kv: -kv[1][0])[:TOP]
    return {
        "kernels": len(kernels),
        "kernel_ms": sum(k["dur"] for k in kernels) / 1e3,
        "memcpy_ms": sum(e["dur"] for e in events if category(e) in MEMCPY_CATS) / 1e3,
        "memset_ms": sum(e["dur"] for e in events if category(e) in MEMSET_CATS) / 1e3,
        "unlinked_kernels": unlinked,
        "top": [{"name": name, "ms": us / 1e3, "count": n, "ops": dict(ops.most_common(3))}
                for name, (us, n, ops) in top],
    }


if __name__ == "__main__":
    for trace in sys.argv[1:]:
        print(json.dumps({"trace": trace, **count(trace)}, indent=1))
