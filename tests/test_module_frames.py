"""Components from a trace's python frames (`analyzers.trace.modules`), for traces recorded by anyone.

The expected figures come from plain Python over the JSON (a kernel's launch by
correlation, the frames around that launch by looping over the frame list),
never from analyzers code, so the vectorised nesting cannot hide its own bug.
The rules that reference applies are the ones the live instrumentation uses,
stated next to each line.
"""
from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from functools import lru_cache

import pandas as pd
import pytest

from analyzers.trace.link import link
from analyzers.trace.load import load_trace
from analyzers.trace.modules import component_table, components_from_frames, layer_table, module_frames_present
from analyzers.vocabulary import COMPONENTS
from tests.conftest import SHARED_TRACES

HF_QWEN = "h100_hf_qwen1.5-0.5b_prefill.json.gz"
DEVICE_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}
MODULE = "nn.Module: "
# Functions the modeling files call by name, by the bare name that ends the frame's name.
ROPE_FUNCTIONS = {"apply_rotary_pos_emb"}
# transformers' attention interface entry (sdpa) and the eager function.
ATTENTION_FUNCTIONS = {"sdpa_attention_forward", "eager_attention_forward", "scaled_dot_product_attention"}


# ------------------------------------------------------------ plain-Python reference


def _class(name: str) -> str:
    """`nn.Module: Qwen2Attention_3` -> `Qwen2Attention`."""
    return re.sub(r"_\d+$", "", name[len(MODULE):])


def _function(name: str) -> str:
    """`.../modeling_qwen2.py(68): apply_rotary_pos_emb` -> `apply_rotary_pos_emb`; builtins by their name."""
    builtin = re.match(r"<built-in (?:function|method) (\w+)", name)
    return builtin.group(1) if builtin else name.rsplit("): ", 1)[-1]


def _is_rule_frame(event: dict) -> bool:
    name = event["name"]
    return name.startswith(MODULE) or _function(name) in ROPE_FUNCTIONS | ATTENTION_FUNCTIONS


def _o_proj(linear: dict, attention: dict, frames: list[dict]) -> bool:
    """In one attention-module call, the Linears that start after its attention function are o_proj;
    with no attention function in the call, the last Linear is."""
    end = attention["ts"] + attention["dur"]
    inside = [f for f in frames if attention["ts"] <= f["ts"] <= end and f is not attention]
    starts = [f["ts"] for f in inside if not f["name"].startswith(MODULE) and _function(f["name"]) in ATTENTION_FUNCTIONS]
    if starts:
        return linear["ts"] >= min(starts)
    linears = [f for f in inside if f["name"].startswith(MODULE) and _class(f["name"]) == "Linear"]
    return linear["ts"] == max(f["ts"] for f in linears)


def _module_component(frame: dict, parent: dict | None, frames: list[dict]) -> str | None:
    cls, parent_cls = _class(frame["name"]), _class(parent["name"]) if parent else ""
    if cls.endswith("RMSNorm"):  # the norm module, all of its kernels; inside attention it is q_norm/k_norm
        return "qk_norm" if parent_cls.endswith("Attention") else "norm"
    if cls.endswith("MLP"):  # the MLP module, its Linears and activation included
        return "mlp"
    if cls.endswith("RotaryEmbedding"):  # rotary_emb: the cos/sin tables
        return "rope"
    if cls == "Embedding":  # the token embedding
        return "embedding"
    if cls.endswith("DecoderLayer"):  # the decoder layer's own work, outside its children
        return "residual"
    if cls == "Linear" and parent_cls.endswith("Attention"):  # q, k, v before the attention, o after
        return "o_proj" if _o_proj(frame, parent, frames) else "qkv_proj"
    if cls == "Linear" and parent_cls.endswith("ForCausalLM"):  # the head, outside the decoder layers
        return "lm_head"
    return None


def _attribute(launch: dict, frames: list[dict]) -> tuple[str, int | None]:
    """The innermost rule frame around the launch wins, as with nested ranges; a module that is a
    component owns its whole subtree (its child modules are not looked at), functions count anywhere."""
    around = [f for f in frames if f["ts"] <= launch["ts"] <= f["ts"] + f["dur"]]
    around.sort(key=lambda f: (f["ts"], -f["dur"]))  # outermost first
    component, layer, owned, parent = "other", None, False, None
    for frame in around:
        name = frame["name"]
        if not name.startswith(MODULE):
            component = "rope" if _function(name) in ROPE_FUNCTIONS else "attention"
            continue
        if _class(name).endswith("DecoderLayer"):
            layer = int(name.rsplit("_", 1)[1])  # the instance counter
        found = None if owned else _module_component(frame, parent, frames)
        if found:
            component, owned = found, found != "residual"
        parent = frame
    return component, layer


def reference(events: list[dict]) -> list[tuple[str, int | None, float]]:
    """(component, layer, dur_us) per device event, by the loops above."""
    frames = defaultdict(list)
    for e in events:
        if e.get("cat") == "python_function" and e.get("ph") == "X" and _is_rule_frame(e):
            frames[(e["pid"], e["tid"])].append(e)
    launches: dict = {}
    for cat in ("cuda_runtime", "cuda_driver"):  # a runtime call wins over a driver call with the same id
        for e in events:
            if e.get("cat") == cat and e.get("ph") == "X" and "correlation" in e.get("args", {}):
                launches.setdefault(e["args"]["correlation"], e)
    out = []
    for e in events:
        if e.get("cat") in DEVICE_CATS and e.get("ph") == "X":
            launch = launches.get(e.get("args", {}).get("correlation"))
            if launch is None:
                out.append(("unlinked", None, e["dur"]))
            else:
                out.append((*_attribute(launch, frames[(launch["pid"], launch["tid"])]), e["dur"]))
    return out


@lru_cache(maxsize=None)
def _raw(name: str) -> list[dict]:
    with gzip.open(SHARED_TRACES / name, "rt") as fh:
        return json.load(fh)["traceEvents"]


def _shared(name: str):
    path = SHARED_TRACES / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared external traces are not checked out next to the project")
    frame = load_trace(path)
    linked = link(frame)
    return frame, linked, components_from_frames(frame, linked)


# ------------------------------------------------------------ the recorded HF trace


def test_hf_qwen_components_match_a_count_over_the_json():
    frame, linked, per_event = _shared(HF_QWEN)
    assert module_frames_present(frame)
    expected_ms, expected_count = defaultdict(float), defaultdict(int)
    for component, _layer, dur in reference(_raw(HF_QWEN)):
        expected_ms[component] += dur / 1e3
        expected_count[component] += 1
    table = component_table(per_event, linked).set_index("component")
    for component in ("norm", "attention", "qkv_proj", "o_proj", "mlp"):
        assert table.loc[component, "ms"] == pytest.approx(expected_ms[component], rel=0.02), component
    assert dict(table["count"]) == dict(expected_count)
    assert table["ms"].sum() == pytest.approx(sum(expected_ms.values()), rel=1e-9)  # every device event, once


def test_hf_qwen_layers_match_a_count_over_the_json():
    _frame, linked, per_event = _shared(HF_QWEN)
    expected = defaultdict(float)
    for component, layer, dur in reference(_raw(HF_QWEN)):
        if layer is not None:
            expected[(component, layer)] += dur / 1e3
    table = layer_table(per_event, linked)
    got = {(row.component, int(row.layer)): row.ms for row in table.itertuples()}
    assert got.keys() == expected.keys()
    assert sorted({layer for _c, layer in got}) == list(range(24))  # Qwen1.5-0.5B has 24 decoder layers
    for key, ms in expected.items():
        assert got[key] == pytest.approx(ms, rel=1e-9), key


def test_traces_without_python_frames_say_so_and_charge_nothing_to_a_component():
    frame, linked, per_event = _shared("a100_alexnet.json.gz")
    assert not module_frames_present(frame)
    assert set(per_event["component"]) <= {"other", "unlinked"}
    assert per_event["module"].isna().all()


# ------------------------------------------------------------ a hand-made trace, one rule per kernel

# (frame name, start µs, duration µs) on the launching thread; the comments give the nesting.
FRAMES = [
    ("nn.Module: ToyForCausalLM_0", 0, 1000),
    ("nn.Module: ToyModel_0", 1, 900),
    ("nn.Module: Embedding_0", 2, 10),
    ("nn.Module: ToyDecoderLayer{0}", 20, 400),
    ("nn.Module: ToyRMSNorm_0", 21, 15),
    ("toy/modeling_toy.py(40): forward", 28, 5),  # a plain function inside the norm: still norm
    ("nn.Module: ToyAttention_0", 40, 200),
    ("nn.Module: Linear_0", 41, 10),
    ("nn.Module: Linear_1", 52, 10),
    ("nn.Module: Linear_2", 63, 10),
    ("toy/modeling_toy.py(68): apply_rotary_pos_emb", 75, 10),
    ("transformers/integrations/sdpa_attention.py(18): sdpa_attention_forward", 90, 30),
    ("nn.Module: Linear_3", 125, 10),
    ("nn.Module: ToyMLP_0", 260, 100),
    ("nn.Module: Linear_4", 261, 30),
    ("nn.Module: ToyDecoderLayer{1}", 430, 400),
    ("nn.Module: ToyAttention_1", 440, 200),
    ("nn.Module: Linear_5", 441, 10),
    ("nn.Module: ToyRMSNorm_1", 455, 10),
    ("nn.Module: Linear_6", 500, 10),
    ("nn.Module: ToyRMSNorm_2", 840, 20),
    ("nn.Module: Linear_7", 910, 50),
]
# kernel name: (launch time, device µs, component, layer slot 0/1 or None). By hand, from FRAMES.
KERNELS = {
    "embed": (5, 1.0, "embedding", None),  # in Embedding_0
    "norm_a": (25, 2.0, "norm", 0),  # in ToyRMSNorm_0
    "norm_b": (30, 3.0, "norm", 0),  # in a function inside ToyRMSNorm_0: the whole module is norm
    "q": (45, 4.0, "qkv_proj", 0),  # first Linear of the attention call, before sdpa
    "k": (55, 5.0, "qkv_proj", 0),
    "v": (65, 6.0, "qkv_proj", 0),
    "rope": (80, 7.0, "rope", 0),  # apply_rotary_pos_emb
    "sdpa": (100, 8.0, "attention", 0),  # sdpa_attention_forward
    "o": (130, 9.0, "o_proj", 0),  # the Linear after sdpa
    "attn_glue": (150, 10.0, "residual", 0),  # the attention module's own work: no range of its own, as live
    "add": (250, 11.0, "residual", 0),  # the decoder layer's own work
    "mlp": (270, 12.0, "mlp", 0),  # a Linear inside ToyMLP_0: the MLP owns it
    "qkv_fused": (445, 13.0, "qkv_proj", 1),  # no attention function in this call: not the last Linear
    "q_norm": (458, 14.0, "qk_norm", 1),  # a norm inside attention
    "inline_attn": (470, 15.0, "residual", 1),
    "o_last": (505, 16.0, "o_proj", 1),  # the last Linear of a call without an attention function
    "final_norm": (845, 17.0, "norm", None),  # outside every decoder layer
    "lm_head": (920, 18.0, "lm_head", None),  # Linear directly under ToyForCausalLM
    "model_glue": (990, 19.0, "other", None),  # inside modules, but in none that is a component
    "no_frame": (2000, 20.0, "other", None),  # no python frame around the launch at all
}
UNLINKED_KERNEL = ("lost", 21.0)  # its correlation matches no launch


def _toy_events(frames: list, kernels: dict, layer_suffixes: tuple[str, str] = ("", "")) -> list[dict]:
    host, device = {"pid": 1, "tid": 1}, {"pid": 0, "tid": 7}
    events = [{"ph": "X", "cat": "python_function", "name": name.format(*layer_suffixes), "ts": ts, "dur": dur,
               **host} for name, ts, dur in frames]
    for i, (kernel, (at, dur, _c, _l)) in enumerate(kernels.items()):
        events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": at, "dur": 1,
                       "args": {"correlation": 100 + i}, **host})
        events.append({"ph": "X", "cat": "kernel", "name": kernel, "ts": 5000 + 100 * i, "dur": dur,
                       "args": {"correlation": 100 + i, "stream": 7, "device": 0}, **device})
    events.append({"ph": "X", "cat": "kernel", "name": UNLINKED_KERNEL[0], "ts": 9000, "dur": UNLINKED_KERNEL[1],
                   "args": {"correlation": 999, "stream": 7, "device": 0}, **device})
    return events


def _toy(tmp_path, layer_suffixes=("_0", "_1"), frames=FRAMES, kernels=KERNELS):
    path = tmp_path / "toy.json"
    path.write_text(json.dumps({"traceEvents": _toy_events(frames, kernels, layer_suffixes)}))
    frame = load_trace(path)
    linked = link(frame)
    per_event = components_from_frames(frame, linked)
    return linked, per_event.assign(kernel=linked.device["name"].astype(str))


@pytest.mark.parametrize("suffixes,layers", [
    (("_0", "_1"), (0, 1)),
    (("_5", "_6"), (5, 6)),  # the instance counter, not the call order
    (("", ""), (0, 1)),  # no counter: call order within the parent
])
def test_each_rule_on_a_hand_made_trace(tmp_path, suffixes, layers):
    _linked, per_event = _toy(tmp_path, suffixes)
    rows = per_event.set_index("kernel")
    for kernel, (_at, _dur, component, slot) in KERNELS.items():
        assert rows.loc[kernel, "component"] == component, kernel
        layer = rows.loc[kernel, "layer"]
        assert pd.isna(layer) if slot is None else layer == layers[slot], kernel
    assert rows.loc[UNLINKED_KERNEL[0], "component"] == "unlinked"
    assert rows.loc["q", "module"] == "nn.Module: Linear_0"
    assert rows.loc["norm_b", "function"] == "toy/modeling_toy.py(40): forward"
    assert rows.loc["sdpa", "function"].endswith("sdpa_attention_forward")
    assert pd.isna(rows.loc["no_frame", "module"])


def test_tables_of_the_hand_made_trace(tmp_path):
    linked, per_event = _toy(tmp_path)
    expected = defaultdict(float)
    for _at, dur, component, _slot in KERNELS.values():
        expected[component] += dur / 1e3
    expected["unlinked"] += UNLINKED_KERNEL[1] / 1e3
    table = component_table(per_event, linked)
    assert list(table["component"]) == [c for c in (*COMPONENTS, "unlinked") if c in expected]
    assert dict(zip(table["component"], table["ms"], strict=True)) == pytest.approx(dict(expected))
    assert table["ms"].sum() == pytest.approx(sum(d for _a, d, _c, _s in KERNELS.values()) / 1e3 + 0.021)
    assert table["share"].sum() == pytest.approx(1.0)
    layers = layer_table(per_event, linked)
    # layer 1: qkv_fused 13, q_norm 14, inline_attn 15 (residual), o_last 16
    one = layers[layers["layer"] == 1]
    assert list(one["component"]) == ["qkv_proj", "qk_norm", "o_proj", "residual"]
    assert list(one["ms"]) == pytest.approx([0.013, 0.014, 0.016, 0.015])



# A serving engine's module tree (SGLang Qwen3): fused projections with their own class names, the
# engine's attention op as a module inside the model's attention module, LogitsProcessor and Sampler.
ENGINE_FRAMES = [
    ("nn.Module: Qwen3DecoderLayer_0", 0, 300),
    ("nn.Module: Qwen3Attention_0", 10, 200),
    ("nn.Module: QKVParallelLinear_0", 11, 10),
    ("nn.Module: RMSNorm_1", 25, 10),
    ("nn.Module: RotaryEmbedding_0", 40, 10),
    ("nn.Module: RadixAttention_0", 60, 50),
    ("nn.Module: RowParallelLinear_0", 120, 10),
    ("nn.Module: LogitsProcessor_0", 400, 20),
    ("nn.Module: Sampler_0", 430, 20),
]
ENGINE_KERNELS = {
    "qkv": (15, 1.0, "qkv_proj", 0),  # the Linear-class module before the attention op
    "q_norm": (30, 2.0, "qk_norm", 0),  # a norm inside attention
    "rope": (45, 3.0, "rope", 0),  # RotaryEmbedding module
    "fmha": (80, 4.0, "attention", 0),  # an attention module inside the attention module
    "o": (125, 5.0, "o_proj", 0),  # the Linear-class module after it
    "logits": (410, 6.0, "lm_head", None),
    "sample": (440, 7.0, "sampling", None),
}


def test_a_serving_engines_modules(tmp_path):
    _linked, per_event = _toy(tmp_path, frames=ENGINE_FRAMES, kernels=ENGINE_KERNELS)
    rows = per_event.set_index("kernel")
    for kernel, (_at, _dur, component, slot) in ENGINE_KERNELS.items():
        assert rows.loc[kernel, "component"] == component, kernel
        assert pd.isna(rows.loc[kernel, "layer"]) if slot is None else rows.loc[kernel, "layer"] == slot, kernel


def test_the_live_rules_are_the_shared_tables():
    """profiler.component_rules names modules from the very tables the trace side reads."""
    pytest.importorskip("torch")
    from analyzers import component_names
    from profiler import component_rules

    assert component_rules.FUNCTION_RULES is component_names.FUNCTION_RULES
    assert component_rules.MODULE_NAME_RULES is component_names.MODULE_NAME_RULES


# GPT-2 and Mixtral as Kineto writes them with `with_modules=True` (class names, never attribute names):
# GPT-2 projects with Conv1D (c_attn before sdpa, c_proj after it; c_fc/c_proj inside GPT2MLP), LayerNorm,
# GPT2Block as the decoder layer and a Linear directly under GPT2LMHeadModel as lm_head; Mixtral's MoE block
# (router Linear and expert matmuls alike) is the MLP.
FAMILY_FRAMES = [
    ("nn.Module: GPT2LMHeadModel_0", 0, 1000),
    ("nn.Module: GPT2Block_0", 10, 300),
    ("nn.Module: LayerNorm_0", 12, 8),
    ("nn.Module: GPT2Attention_0", 30, 100),
    ("nn.Module: Conv1D_0", 31, 10),
    ("transformers/integrations/sdpa_attention.py(18): sdpa_attention_forward", 50, 30),
    ("nn.Module: Conv1D_1", 90, 10),
    ("nn.Module: GPT2MLP_0", 150, 100),
    ("nn.Module: Conv1D_2", 151, 20),
    ("nn.Module: Conv1D_3", 200, 20),
    ("nn.Module: MixtralDecoderLayer_0", 400, 300),
    ("nn.Module: MixtralSparseMoeBlock_0", 420, 200),
    ("nn.Module: Linear_0", 421, 10),
    ("nn.Module: MixtralExperts_0", 440, 100),
    ("nn.Module: Linear_1", 900, 20),
]
FAMILY_KERNELS = {
    "ln": (14, 1.0, "norm", 0),
    "c_attn": (33, 2.0, "qkv_proj", 0),  # the Conv1D before the attention function
    "sdpa": (60, 3.0, "attention", 0),
    "c_proj": (92, 4.0, "o_proj", 0),  # the Conv1D after it
    "c_fc": (160, 5.0, "mlp", 0),  # Conv1D inside GPT2MLP
    "mlp_out": (210, 6.0, "mlp", 0),
    "router": (425, 7.0, "mlp", 0),  # the MoE block owns its router and its experts
    "experts": (450, 8.0, "mlp", 0),
    "lm_head": (905, 9.0, "lm_head", None),  # the Linear directly under the *LMHeadModel
}


def test_gpt2_and_mixtral_module_frames(tmp_path):
    _linked, per_event = _toy(tmp_path, frames=FAMILY_FRAMES, kernels=FAMILY_KERNELS)
    rows = per_event.set_index("kernel")
    for kernel, (_at, _dur, component, slot) in FAMILY_KERNELS.items():
        assert rows.loc[kernel, "component"] == component, kernel
        assert pd.isna(rows.loc[kernel, "layer"]) if slot is None else rows.loc[kernel, "layer"] == slot, kernel
