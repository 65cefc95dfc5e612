"""Steps of a serving or training loop, what phase each one was, and which kernels it ran.

A trace of a server or a training script holds several iterations, and a
prefill step, a decode step and a mixed (chunked-prefill) step cost different
things, so a table over the whole trace mixes them. The frameworks mark their
iterations with ranges, and these are the ones recognised (each recognised by
name, once per distinct name):

- `ProfilerStep#N`: torch.profiler's own step marks (`prof.step()`). The name
  says nothing about the phase: `training` when an optimizer or autograd range
  of the same process starts inside it, else `unknown`.
- `execute_<tokens>_context_<C>(sq..sk..)_generation_<G>(sq..sk..)`: the
  execute annotation of vLLM's ROCm model runner (the SGLang build on ROCm writes
  it too): C requests in context (prefill, whole or a chunk) and G in generation
  (decode). C and G > 0 is `mixed`, as chunked prefill does; one of them alone
  is `prefill` or `decode`; neither is `unknown`.
- `step[EXTEND bs=15 toks=15360]`, `step[DECODE ...]`, `step[MIXED ...]`: SGLang's
  step annotation; the forward mode names the phase. Speculative-decoding modes
  (TARGET_VERIFY, DRAFT_EXTEND) and IDLE are `unknown`: no guess.
- `.../gpu_model_runner.py(N): execute_model` (a python_function, traces recorded
  with stacks) and `gpu_model_runner: forward` (vLLM's VLLM_CUSTOM_SCOPES_FOR_PROFILING
  scope): one vLLM step each, phase `unknown` unless a range around or inside says it.

Nesting: recognised ranges on one thread form a tree. A range with exactly
one recognised range inside is the same iteration seen twice (a ProfilerStep
around one SGLang step, SGLang's execute annotation around its step[...], the
execute annotation around vLLM's execute_model frame), so the two make one
step: the extent is the outer one (work launched around the inner range is
still that iteration's), the phase comes from the innermost range that names
one. A range with several recognised ranges inside stays a step of its own,
holding only what is launched outside them.

CUDA/HIP graph replays need nothing special: Kineto gives each replayed kernel
the correlation id of its `cudaGraphLaunch`/`hipGraphLaunch` call, so `link`
already names that call as the kernel's launch, and the step whose range
encloses the graph launch claims the kernel.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analyzers.errors import InputError
from analyzers.trace.kinds import RANGE_CATS, cat_in, category_mask, coded, complete, thread_keys
from analyzers.trace.link import LinkedTrace
from analyzers.trace.nesting import innermost, nest

__all__ = ["DECODE", "MIXED", "NO_STEP", "PHASES", "PREFILL", "STEP_COLUMNS", "STEP_TABLE_COLUMNS", "TRAINING",
           "UNKNOWN", "device_rows_in", "find_steps", "step_name_phase", "step_of_events", "step_table"]

PREFILL, DECODE, MIXED, TRAINING, UNKNOWN = "prefill", "decode", "mixed", "training", "unknown"
PHASES = (PREFILL, DECODE, MIXED, TRAINING, UNKNOWN)
STEP_COLUMNS = ["step", "name", "phase", "evidence", "start_us", "end_us", "pid", "tid", "ranges"]
STEP_TABLE_COLUMNS = ["step", "name", "phase", "kernels", "kernel_ms", "window_ms", "share"]
NO_STEP = "(no step)"  # the step_table row for device events no step claims, so the rows add up

# python_function too: vLLM's execute_model frame exists only in traces recorded with stacks.
STEP_CATS = RANGE_CATS | frozenset({"python_function"})
# Ranges that only a training step runs: torch's optimizer wrappers and autograd's backward nodes.
TRAINING_PREFIXES = ("Optimizer.step#", "Optimizer.zero_grad#", "autograd::engine::evaluate_function:")

_PROFILER_STEP = re.compile(r"ProfilerStep#\d+")
_SGLANG_STEP = re.compile(r"step\[([A-Z_]+)\b")
_VLLM_EXECUTE = re.compile(r"execute_\d+_context_(\d+)\(.*?\)_generation_(\d+)\(")
_VLLM_RUNNER_FRAME = re.compile(r"gpu_model_runner\.py\(\d+\): execute_model")
_VLLM_FORWARD_SCOPE = "gpu_model_runner: forward"
_SGLANG_MODES = {"EXTEND": PREFILL, "PREFILL": PREFILL, "SPLIT_PREFILL": PREFILL, "DECODE": DECODE, "MIXED": MIXED}


def step_name_phase(name: str) -> tuple[str, str] | None:
    """(phase, evidence) for a range name that marks a step, None for any other name.

    `evidence` is the name itself when it names the phase, "" when it only marks a step.
    """
    if _PROFILER_STEP.fullmatch(name) or _VLLM_RUNNER_FRAME.search(name) or name == _VLLM_FORWARD_SCOPE:
        return UNKNOWN, ""
    sglang = _SGLANG_STEP.match(name)
    if sglang:
        phase = _SGLANG_MODES.get(sglang.group(1), UNKNOWN)
        return phase, name if phase != UNKNOWN else ""
    vllm = _VLLM_EXECUTE.match(name)
    if vllm:
        context, generation = int(vllm.group(1)), int(vllm.group(2))
        phase = MIXED if context and generation else PREFILL if context else DECODE if generation else UNKNOWN
        return phase, name if phase != UNKNOWN else ""
    return None


def find_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per step of the frame `load_trace` returns, in time order; columns `STEP_COLUMNS`.

    `step` numbers the steps 0.. by start; `name` is the range that decided the phase (the
    innermost recognised one when none did); `evidence` the range name that said the phase
    ("" for `unknown`); `start_us`/`end_us` the outermost range of the step, on thread
    (`pid`, `tid`); `ranges` the frame row labels of the step's recognised ranges, outermost
    first, which `step_of_events` reads.
    """
    codes, labels = coded(frame["name"])
    per_name = [step_name_phase(str(label)) for label in labels]
    is_step = np.array([found is not None for found in per_name], dtype=bool)
    rows = np.flatnonzero(complete(frame) & cat_in(frame, STEP_CATS) & is_step[codes])
    if len(rows) == 0:
        return _steps_frame([])
    ts = frame["ts_us"].to_numpy(dtype=np.float64)
    dur = np.nan_to_num(frame["dur_us"].to_numpy(dtype=np.float64))
    nesting = nest(thread_keys(frame)[rows], ts[rows], dur[rows])
    sorted_rows = rows[nesting.order]  # frame positions, parents before children
    chains = _chains(nesting.parent)
    training = _training_evidence(frame, sorted_rows[[chain[0] for chain in chains]], ts, dur)
    (pid, pids), (tid, tids) = coded(frame["pid"]), coded(frame["tid"])
    found = []
    for chain, trained in zip(chains, training, strict=True):
        top, phases = sorted_rows[chain[0]], [per_name[codes[sorted_rows[i]]] for i in chain]
        known = [i for i, (phase, _) in enumerate(phases) if phase != UNKNOWN]
        decider = known[-1] if known else len(chain) - 1  # innermost range that names a phase
        phase, evidence = phases[decider]
        if phase == UNKNOWN and trained:
            phase, evidence = TRAINING, trained
        found.append({"name": labels[codes[sorted_rows[chain[decider]]]], "phase": phase, "evidence": evidence,
                      "start_us": ts[top], "end_us": ts[top] + dur[top], "pid": pids[pid[top]], "tid": tids[tid[top]],
                      "ranges": tuple(frame.index[sorted_rows[chain]].tolist())})
    return _steps_frame(found)


def _steps_frame(found: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(found, columns=STEP_COLUMNS[1:])
    table = table.sort_values(["start_us", "end_us"], ascending=[True, False], kind="stable").reset_index(drop=True)
    table.insert(0, "step", np.arange(len(table), dtype=np.int64))
    return table.astype({"start_us": np.float64, "end_us": np.float64})


def _chains(parent: np.ndarray) -> list[list[int]]:
    """Sorted indices of each step's ranges, outermost first (see the module docstring on nesting).

    A range with exactly one recognised child is absorbed into that child's step; children
    sort after their parents, so one backward pass finds where each absorbed chain ends.
    """
    n = len(parent)
    children = np.bincount(parent[parent >= 0], minlength=n)
    only_child = np.full(n, -1, dtype=np.int64)
    only_child[parent[parent >= 0]] = np.flatnonzero(parent >= 0)  # the last child written; read only when alone
    target = np.arange(n)
    for i in range(n - 1, -1, -1):
        if children[i] == 1:
            target[i] = target[only_child[i]]
    chains: dict[int, list[int]] = {}
    for i in range(n):
        chains.setdefault(int(target[i]), []).append(i)
    return list(chains.values())


def _training_evidence(frame: pd.DataFrame, tops: np.ndarray, ts: np.ndarray, dur: np.ndarray) -> list[str]:
    """Per range (frame positions `tops`): the name of the first optimizer/autograd range of its process starting inside it, or "".

    Same process, any thread: autograd runs backward on its own thread, outside the step's thread.
    """
    marks = np.flatnonzero(complete(frame) & cat_in(frame, RANGE_CATS)
                           & category_mask(frame["name"], lambda name: name.startswith(TRAINING_PREFIXES)))
    out = [""] * len(tops)
    if len(marks) == 0:
        return out
    pid = coded(frame["pid"])[0]
    codes, labels = coded(frame["name"])
    marks = marks[np.lexsort((ts[marks], pid[marks]))]  # by process, then time: one searchsorted per range
    key = pid[marks]
    for i, row in enumerate(tops):
        lo, hi = np.searchsorted(key, pid[row], "left"), np.searchsorted(key, pid[row], "right")
        first = lo + np.searchsorted(ts[marks[lo:hi]], ts[row], "left")
        if first < hi and ts[marks[first]] <= ts[row] + dur[row]:
            out[i] = str(labels[codes[marks[first]]])
    return out


def step_of_events(steps: pd.DataFrame, frame: pd.DataFrame, linked: LinkedTrace) -> pd.Series:
    """The step of each `linked.device` row (nullable Int64, same index), found in this order:

    1. the innermost step range around the kernel's launch call on the launching thread
       (a graph replay's kernels: around its graph launch);
    2. a step range of the same process around the launch time, on another thread (the
       autograd thread launches backward kernels outside the thread that marks the step);
    3. the step whose GPU window (its kernels from 1-2, first start to last end) was the
       last to open before the kernel started and is still open: kernels whose launch fell
       outside every step (launched before the profiler started, or between steps);
    else <NA>. `steps` is `find_steps(frame)`; `linked` is `link(frame)`; InputError when
    `steps` names rows that `frame` does not have (steps of another trace).
    """
    dev = linked.device
    found = np.full(len(dev), -1, dtype=np.int64)
    if len(steps) and len(dev):
        launch = frame.index.get_indexer(pd.Index(dev["launch"].astype("Int64").fillna(-1).to_numpy()))
        launch = np.where(dev["launch"].isna().to_numpy(), -1, launch)
        ts = frame["ts_us"].to_numpy(dtype=np.float64)
        dur = np.nan_to_num(frame["dur_us"].to_numpy(dtype=np.float64))
        members = [(label, step) for step, ranges in zip(steps["step"], steps["ranges"], strict=True) for label in ranges]
        where = frame.index.get_indexer(pd.Index([label for label, _ in members]))
        if (where < 0).any():
            raise InputError("steps name ranges that are not rows of this frame; pass find_steps(frame) of the same frame.")
        step_of_range = np.array([step for _, step in members], dtype=np.int64)
        has = launch >= 0
        found[has] = _around(thread_keys(frame), where, step_of_range, launch[has], ts, dur)
        tops = frame.index.get_indexer(pd.Index([ranges[0] for ranges in steps["ranges"]]))
        again = np.flatnonzero(has & (found < 0))
        found[again] = _around(coded(frame["pid"])[0], tops, steps["step"].to_numpy(np.int64), launch[again], ts, dur)
        found = _by_window(found, dev["ts_us"].to_numpy(np.float64), dev["dur_us"].to_numpy(np.float64))
    return pd.Series(pd.arrays.IntegerArray(np.maximum(found, 0), found < 0), index=dev.index, name="step")


def _around(key: np.ndarray, ranges: np.ndarray, step_of_range: np.ndarray, at: np.ndarray, ts: np.ndarray,
            dur: np.ndarray) -> np.ndarray:
    """Step of the innermost range (frame positions `ranges`) around each position `at` with the same key, or -1."""
    hit = innermost(nest(key[ranges], ts[ranges], dur[ranges]), key[at], ts[at])
    return np.where(hit >= 0, step_of_range[np.maximum(hit, 0)], -1)


def _by_window(found: np.ndarray, start: np.ndarray, dur: np.ndarray) -> np.ndarray:
    end = start + np.nan_to_num(dur)
    known = found >= 0
    if not known.any() or known.all():
        return found
    windows = pd.DataFrame({"step": found[known], "start": start[known], "end": end[known]}).groupby("step")
    first, last = windows["start"].min().sort_values(), windows["end"].max()
    ids = first.index.to_numpy(np.int64)
    lost = np.flatnonzero(~known)
    k = np.searchsorted(first.to_numpy(), start[lost], "right") - 1
    open_ = (k >= 0) & (start[lost] <= last.reindex(ids).to_numpy()[np.maximum(k, 0)])
    out = found.copy()
    out[lost[open_]] = ids[k[open_]]
    return out


def step_table(steps: pd.DataFrame, per_event_step: pd.Series, linked: LinkedTrace) -> pd.DataFrame:
    """Per step: phase, device events (`kernels`), their summed time, GPU window and share of all device time.

    Columns `STEP_TABLE_COLUMNS`, one row per step in step order, and a last `(no step)` row
    (step <NA>) for device events no step claims, so `kernel_ms` and `share` add up to the
    trace's device time. `window_ms` is first kernel start to last kernel end (NaN for a step
    without kernels): kernel_ms well below it means the GPU idled inside the step.
    """
    dev = linked.device
    start = dev["ts_us"].to_numpy(np.float64)
    dur = np.nan_to_num(dev["dur_us"].to_numpy(np.float64))
    events = pd.DataFrame({"step": per_event_step.reindex(dev.index).to_numpy(dtype=np.float64, na_value=np.nan),
                           "start": start, "end": start + dur, "dur": dur})
    grouped = events.groupby("step", dropna=False).agg(kernels=("dur", "size"), us=("dur", "sum"),
                                                       first=("start", "min"), last=("end", "max"))
    total_us = float(dur.sum())
    table = pd.DataFrame({"step": pd.array(steps["step"].to_numpy(), dtype="Int64"), "name": steps["name"].to_numpy(),
                          "phase": steps["phase"].to_numpy()})
    rows = grouped.reindex(steps["step"].to_numpy(dtype=np.float64))
    if grouped.index.isna().any():
        table.loc[len(table)] = [pd.NA, NO_STEP, ""]
        rows = pd.concat([rows, grouped[grouped.index.isna()]])
    table["kernels"] = rows["kernels"].fillna(0).to_numpy(np.int64)
    table["kernel_ms"] = rows["us"].fillna(0.0).to_numpy(np.float64) / 1e3
    table["window_ms"] = (rows["last"] - rows["first"]).to_numpy(np.float64) / 1e3
    table["share"] = table["kernel_ms"] * 1e3 / total_us if total_us > 0 else 0.0
    return table[STEP_TABLE_COLUMNS]


def device_rows_in(steps: pd.DataFrame, per_event_step: pd.Series, phases: Sequence[str] = (PREFILL,)) -> pd.Index:
    """The `linked.device` row labels of the steps whose phase is in `phases` (e.g. to break prefill down alone)."""
    wanted = steps.loc[steps["phase"].isin(list(phases)), "step"].to_numpy(np.int64)
    return per_event_step.index[per_event_step.isin(wanted).fillna(False).to_numpy(dtype=bool)]
