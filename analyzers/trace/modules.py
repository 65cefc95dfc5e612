"""Components from a trace's Python frames, for traces recorded by anyone with module information.

A script that records with `with_stack=True` or `with_modules=True` (Hugging Face
examples often do) leaves `python_function` events on the launching thread:
`nn.Module: Qwen2Attention_3`, `nn.Module: Linear_12`, `.../modeling_qwen2.py(68):
apply_rotary_pos_emb`, nested around the `cudaLaunchKernel` calls. That is the
same information the live instrumentation reads from the model, so each kernel
gets the component our own ranges would have given it, by the same rules
(`analyzers.component_names`), without our ranges in the trace:

- innermost wins, as with nested ranges: each *claimed* frame is a range, and a
  kernel belongs to the innermost claimed frame around its launch;
- a matched module is timed as a whole and its child modules are not claimed
  (the MLP's Linears are mlp), but functions are claimed wherever they run,
  because the live side wraps them globally;
- class names stand in for attribute names (Kineto writes `Linear_12`, never
  `q_proj`): a norm inside an attention module is qk_norm, a Linear whose parent
  module is a `*ForCausalLM` (or the outermost module) is lm_head, and in each call
  of an attention module the Linears that start before its attention work (an
  sdpa/eager/flash function, see FRAME_FUNCTION_RULES, or an attention module
  inside it such as SGLang's RadixAttention, itself `attention`) are qkv_proj,
  those after it o_proj; with no attention work in the call the last Linear is o_proj;
- serving engines' LogitsProcessor is lm_head and their Sampler is sampling;
- a decoder layer is claimed as `residual`, so its own glue (the residual adds)
  lands there, and so does anything in an attention module that no child claims,
  as it does live (the attention module itself is not a range there either);
- layer = the decoder layer's instance counter (`Qwen2DecoderLayer_3` -> 3), or its
  call order within its parent's call when the name has no counter.

Kernels with no claimed frame are `other`, kernels with no launch `unlinked`.
A torch.compile'd model shows one `GraphModule` frame instead of its modules,
so its kernels are `other` here (vLLM's piecewise graphs): classify by kernel name.
Python loops run over frames (thousands), never over device events.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzers.component_names import (
    ATTENTION_CLASS,
    CAUSAL_LM_CLASS,
    DECODER_LAYER_CLASS,
    EMBEDDING_CLASS,
    FRAME_FUNCTION_RULES,
    LINEAR_CLASS,
    LM_HEAD_CLASS,
    MLP_CLASS,
    NORM_CLASS,
    ROTARY_CLASS,
    SAMPLER_CLASS,
)
from analyzers.trace.kinds import cat_in, category_mask, coded, complete, thread_keys
from analyzers.trace.link import UNLINKED, LinkedTrace
from analyzers.trace.nesting import Nesting, innermost, nest
from analyzers.vocabulary import COMPONENTS

__all__ = ["FRAME_COLUMNS", "MODULE_PREFIX", "component_table", "components_from_frames", "layer_table",
           "module_frames_present"]

MODULE_PREFIX = "nn.Module: "
PYTHON_CATS = frozenset({"python_function"})
FRAME_COLUMNS = ["module", "function", "component", "layer"]
NO_FRAME = "other"
COMPONENT_ORDER = (*COMPONENTS, UNLINKED)
_COUNTER = re.compile(r"_(\d+)$")
_FUNCTION = re.compile(r"\)\s*:\s*([\w.<>]+)$|^<built-in (?:function|method) (\w+)")

# Kinds of module frame, from the class name; checked in this order (see component_names).
ROPE, LM_HEAD, SAMPLER, EMBEDDING, NORM, MLP, ATTENTION, LAYER, LINEAR, CAUSAL_LM, MODULE = (
    "rope", "lm_head", "sampling", "embedding", "norm", "mlp", "attention_module", "layer", "linear", "causal_lm",
    "module")
_CLASS_KINDS = ((ROTARY_CLASS, ROPE), (LM_HEAD_CLASS, LM_HEAD), (SAMPLER_CLASS, SAMPLER), (EMBEDDING_CLASS, EMBEDDING),
                (NORM_CLASS, NORM), (MLP_CLASS, MLP), (ATTENTION_CLASS, ATTENTION), (DECODER_LAYER_CLASS, LAYER),
                (LINEAR_CLASS, LINEAR), (CAUSAL_LM_CLASS, CAUSAL_LM))
# Module kinds that are a range of their own (the first four with their whole subtree); a decoder layer's
# range holds only what its children leave.
_CLAIMED_MODULES = {ROPE: "rope", LM_HEAD: "lm_head", SAMPLER: "sampling", EMBEDDING: "embedding", NORM: "norm",
                    MLP: "mlp", LAYER: "residual"}
QKV = "qkv_proj"  # every Linear of an attention call, until call order picks out o_proj


def module_frames_present(frame: pd.DataFrame) -> bool:
    """Whether the trace has `nn.Module: ...` python frames, i.e. was recorded with module information."""
    return bool(_python_frames(frame)[1].any())


def components_from_frames(frame: pd.DataFrame, linked: LinkedTrace) -> pd.DataFrame:
    """One row per device event (index = `linked.device.index`), columns FRAME_COLUMNS.

    `module`: innermost `nn.Module: ...` frame name around the launch; `function`:
    innermost other python frame name; `component` by the rules in the module
    docstring; `layer` (Int64): the enclosing decoder layer's index, <NA> outside one.
    `frame` is the loaded trace `linked` was made from.
    """
    dev = linked.device
    launch = _launch_positions(frame, dev)
    has = launch >= 0
    thread, ts, dur = thread_keys(frame), frame["ts_us"].to_numpy(np.float64), frame["dur_us"].to_numpy(np.float64)
    codes, labels = coded(frame["name"])
    names = labels[codes]
    python, is_module = _python_frames(frame)
    rule = category_mask(frame["name"], lambda name: _function_name(name) in FRAME_FUNCTION_RULES)
    walked = _walk(np.flatnonzero(is_module | (python & rule)), names, thread, ts, dur)
    q_thread, q_ts = thread[launch[has]], ts[launch[has]]
    hit = np.full(len(dev), -1, dtype=np.int64)
    hit[has] = innermost(walked.nesting, q_thread, q_ts)
    claimed = _follow(walked.claimed, hit)
    component = _take(walked.component, claimed, NO_FRAME).astype(object)
    component[~has] = UNLINKED
    layer = _take(walked.layer, claimed, -1).astype(np.int64)
    module = _follow(walked.module, hit)
    functions = np.flatnonzero(python & ~is_module)
    function = np.full(len(dev), -1, dtype=np.int64)
    function[has] = _follow(functions, innermost(nest(thread[functions], ts[functions], dur[functions]), q_thread, q_ts))
    return pd.DataFrame({
        "module": _named(names, _follow(walked.rows, module)),
        "function": _named(names, function),
        "component": component,
        "layer": pd.arrays.IntegerArray(np.maximum(layer, 0), layer < 0),
    }, index=dev.index, columns=FRAME_COLUMNS)


def component_table(per_event: pd.DataFrame, linked: LinkedTrace) -> pd.DataFrame:
    """Device ms per component: columns component, ms, share, count.

    Rows in COMPONENTS order then `unlinked`, only those with events; every device
    event is in exactly one row, so `ms` sums to the total device time.
    """
    us = linked.device["dur_us"].to_numpy(np.float64)
    table = pd.DataFrame({"component": per_event["component"].to_numpy(object), "us": np.nan_to_num(us)})
    grouped = table.groupby("component", sort=False)["us"].agg(["sum", "count"])
    rank = {name: i for i, name in enumerate(COMPONENT_ORDER)}
    grouped = grouped.loc[sorted(grouped.index, key=lambda c: (rank.get(c, len(rank)), c))]
    total = float(grouped["sum"].sum())
    return pd.DataFrame({"component": grouped.index.to_numpy(object), "ms": grouped["sum"].to_numpy() / 1e3,
                         "share": grouped["sum"].to_numpy() / total if total > 0 else 0.0,
                         "count": grouped["count"].to_numpy(np.int64)})


def layer_table(per_event: pd.DataFrame, linked: LinkedTrace) -> pd.DataFrame:
    """Device ms per (component, layer) for the events inside a decoder layer: columns component, layer, ms.

    Rows by layer, then COMPONENTS order; events outside every layer (embedding,
    final norm, lm_head) are not rows here but are in `component_table`.
    """
    inside = per_event["layer"].notna().to_numpy()
    table = pd.DataFrame({"component": per_event["component"].to_numpy(object)[inside],
                          "layer": per_event["layer"].to_numpy(np.int64, na_value=0)[inside],
                          "us": np.nan_to_num(linked.device["dur_us"].to_numpy(np.float64)[inside])})
    grouped = table.groupby(["layer", "component"], sort=False)["us"].sum().reset_index()
    rank = {name: i for i, name in enumerate(COMPONENT_ORDER)}
    grouped["_rank"] = grouped["component"].map(rank).fillna(len(rank))
    grouped = grouped.sort_values(["layer", "_rank"], kind="stable")
    return pd.DataFrame({"component": grouped["component"].to_numpy(object),
                         "layer": pd.array(grouped["layer"].to_numpy(), dtype="Int64"),
                         "ms": grouped["us"].to_numpy() / 1e3})



@dataclass(frozen=True)
class _Walked:
    """Facts about the relevant frames, indexed by the caller's order of `rows` (frame positions).

    `module`: innermost module frame at or above each frame; `claimed`: innermost
    frame at or above it that has a component (-1: none); `component` (None: not
    claimed); `layer` (-1: outside every decoder layer). Pointers are caller indices.
    """

    rows: np.ndarray
    nesting: Nesting
    module: np.ndarray
    claimed: np.ndarray
    component: np.ndarray
    layer: np.ndarray


def _walk(rows: np.ndarray, names: np.ndarray, thread: np.ndarray, ts: np.ndarray, dur: np.ndarray) -> _Walked:
    """Parents before children (the nesting's sorted order), so each frame reads what its ancestors decided."""
    nesting = nest(thread[rows], ts[rows], dur[rows])
    sorted_names = names[rows[nesting.order]].tolist()
    kinds = [_kind(name) for name in sorted_names]
    n = len(rows)
    # Sorted indices: `above` is the nearest module strictly above, `whole` the nearest module claimed with its subtree.
    above, module, claimed, whole, layer = ([-1] * n for _ in range(5))
    component: list[str | None] = [None] * n
    calls: dict[int, int] = {}  # decoder-layer calls seen per parent, for names without a counter
    for i, p in enumerate(nesting.parent.tolist()):
        kind = kinds[i]
        if p >= 0:
            above[i] = module[p]
            layer[i], claimed[i], whole[i] = layer[p], claimed[p], whole[p]
        up = above[i]
        if kind == LAYER:
            counter = _COUNTER.search(sorted_names[i])
            layer[i] = int(counter.group(1)) if counter else calls.get(up, 0)
            calls[up] = calls.get(up, 0) + 1
        if isinstance(kind, tuple):  # a function rule: claimed wherever it runs, as the live wrapper is
            component[i] = kind[1]
        elif whole[i] < 0:  # a module inside a claimed module is that module's business
            component[i] = _module_component(kind, kinds[up] if up >= 0 else None, up >= 0 and above[up] < 0)
        if not isinstance(kind, tuple):
            module[i] = i
            if component[i] not in (None, "residual"):
                whole[i] = i
        elif p >= 0:
            module[i] = module[p]
        if component[i] is not None:
            claimed[i] = i
    _split_projections(kinds, component, above, nesting.start)
    return _to_caller(rows, nesting, (module, claimed, layer), component)


def _kind(name: str) -> str | tuple[str, str] | None:
    """A module frame's kind from its class name, ("function", component) for a rule function."""
    if not name.startswith(MODULE_PREFIX):
        rule = FRAME_FUNCTION_RULES.get(_function_name(name))
        return ("function", rule[0]) if rule else None
    cls = _COUNTER.sub("", name[len(MODULE_PREFIX):])
    return next((kind for pattern, kind in _CLASS_KINDS if pattern.search(cls)), MODULE)


def _module_component(kind: str, parent_kind: str | None, parent_outermost: bool) -> str | None:
    """What the live rules call a module of this kind under a parent of that kind (None: not a range)."""
    if kind == NORM and parent_kind == ATTENTION:
        return "qk_norm"  # q_norm / k_norm
    if kind == ATTENTION and parent_kind == ATTENTION:
        return "attention"  # the engine's attention op inside the model's attention module
    if kind == LINEAR and parent_kind == ATTENTION:
        return QKV  # until call order says which are o_proj (_split_projections)
    if kind == LINEAR and (parent_kind == CAUSAL_LM or (parent_outermost and parent_kind == MODULE)):
        return "lm_head"
    return _CLAIMED_MODULES.get(kind)


def _split_projections(kinds: list, component: list, above: list, start: np.ndarray) -> None:
    """In each attention call, Linears starting at or after its first attention work are o_proj.

    Attention work: a function or inner module claimed `attention` (sdpa_attention_forward,
    RadixAttention). Without any in the call (attention done inline), its last Linear is o_proj.
    """
    first_attention: dict[int, float] = {}
    linears: dict[int, list[int]] = {}
    for i in range(len(kinds)):
        if component[i] == QKV:
            linears.setdefault(above[i], []).append(i)
        elif component[i] == "attention" and above[i] >= 0 and kinds[above[i]] == ATTENTION:
            first_attention.setdefault(above[i], float(start[i]))  # sorted by start: the first one is the earliest
    for call, members in linears.items():
        cut = first_attention.get(call)
        for i in members:
            after = start[i] >= cut if cut is not None else i == members[-1]
            component[i] = "o_proj" if after else "qkv_proj"


def _to_caller(rows: np.ndarray, nesting: Nesting, pointers: tuple[list, list, list], component: list) -> _Walked:
    """Sorted indices -> caller indices, so `innermost` answers index these arrays directly."""
    order = nesting.order
    module, claimed, layer = (np.asarray(values, dtype=np.int64) for values in pointers)
    out = [np.full(len(rows), -1, dtype=np.int64) for _ in range(3)]
    out[0][order] = np.where(module >= 0, order[np.maximum(module, 0)], -1)
    out[1][order] = np.where(claimed >= 0, order[np.maximum(claimed, 0)], -1)
    out[2][order] = layer
    comp = np.full(len(rows), None, dtype=object)
    comp[order] = np.asarray(component, dtype=object)
    return _Walked(rows, nesting, out[0], out[1], comp, out[2])


def _python_frames(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Masks of complete python_function events, and of those that are `nn.Module: ...` frames."""
    python = complete(frame) & cat_in(frame, PYTHON_CATS)
    return python, python & category_mask(frame["name"], lambda name: name.startswith(MODULE_PREFIX))


def _take(values: np.ndarray, at: np.ndarray, default: object) -> np.ndarray:
    """values[at] where at >= 0, else `default`; `values` may be empty when every `at` is -1 (no frames)."""
    if len(values) == 0:
        return np.full(len(at), default, dtype=object if isinstance(default, str) or default is None else np.int64)
    return np.where(at >= 0, values[np.maximum(at, 0)], default)


def _follow(pointers: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Positions pointers[at], -1 where at is -1."""
    return _take(pointers, at, -1).astype(np.int64)


def _named(names: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return _take(names, positions, None)


def _function_name(name: str) -> str:
    """`path.py(68): apply_rotary_pos_emb` and `<built-in function sdpa>` -> the bare function name."""
    match = _FUNCTION.search(name)
    return (match.group(1) or match.group(2)) if match else ""


def _launch_positions(frame: pd.DataFrame, dev: pd.DataFrame) -> np.ndarray:
    """Frame position of each device event's launch call, -1 when unlinked."""
    launch = dev["launch"]
    has = launch.notna().to_numpy() & dev["linked"].to_numpy(dtype=bool)
    out = np.full(len(dev), -1, dtype=np.int64)
    if has.any():
        out[has] = frame.index.get_indexer(launch[has].tolist())
    return out
