"""Instrumentation: what it finds in each architecture, that it changes nothing, and that it always leaves."""
from __future__ import annotations

import sys
from collections import Counter

import pytest
import torch

from profiler.component_rules import classify
from profiler.instrumentation import instrument
from profiler.recorders.host import RangeRecorder

FAMILIES = ["tiny-qwen3", "tiny-llama", "tiny-qwen2", "tiny-mistral", "tiny-gemma", "tiny-phi3"]
LAYERS = 4  # every tiny built-in has 4 decoder layers


def _calls(times) -> Counter:
    out = Counter()
    for key, (_ns, calls) in times.items():
        out[key.component] += calls
    return out


def _ids(n=64, vocab=4096, seed=0):
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


def _hooks_left(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("name", FAMILIES)
def test_logits_are_bit_identical(tiny_model, name):
    model = tiny_model(name)
    ids = _ids()
    with torch.inference_mode():
        plain = model(input_ids=ids, logits_to_keep=1).logits
        with instrument(model, RangeRecorder()):
            timed = model(input_ids=ids, logits_to_keep=1).logits
        again = model(input_ids=ids, logits_to_keep=1).logits
    assert torch.equal(plain, timed)
    assert torch.equal(plain, again)


@pytest.mark.parametrize("name,expected", [
    # per layer: q,k,v = 3 qkv_proj; 2 norms (+1 final); q_norm,k_norm only in Qwen3
    ("tiny-qwen3", {"qkv_proj": 3 * LAYERS, "qk_norm": 2 * LAYERS, "norm": 2 * LAYERS + 1, "mlp": LAYERS,
                    "o_proj": LAYERS, "embedding": 1, "lm_head": 1, "rope": 1}),
    ("tiny-llama", {"qkv_proj": 3 * LAYERS, "norm": 2 * LAYERS + 1, "mlp": LAYERS, "o_proj": LAYERS,
                    "embedding": 1, "lm_head": 1, "rope": 1}),
    ("tiny-qwen2", {"qkv_proj": 3 * LAYERS, "norm": 2 * LAYERS + 1, "mlp": LAYERS, "o_proj": LAYERS,
                    "embedding": 1, "lm_head": 1, "rope": 1}),
    ("tiny-mistral", {"qkv_proj": 3 * LAYERS, "norm": 2 * LAYERS + 1, "mlp": LAYERS, "o_proj": LAYERS,
                      "embedding": 1, "lm_head": 1, "rope": 1}),
    # Gemma ties lm_head to the embedding matrix, but they stay two modules: both are timed
    ("tiny-gemma", {"qkv_proj": 3 * LAYERS, "norm": 2 * LAYERS + 1, "mlp": LAYERS, "o_proj": LAYERS,
                    "embedding": 1, "lm_head": 1, "rope": 1}),
    # Phi-3 fuses q,k,v into one qkv_proj and gate/up into one gate_up_proj inside the mlp
    ("tiny-phi3", {"qkv_proj": LAYERS, "norm": 2 * LAYERS + 1, "mlp": LAYERS, "o_proj": LAYERS,
                   "embedding": 1, "lm_head": 1, "rope": 1}),
])
def test_modules_found_per_architecture(tiny_model, name, expected):
    found, layers = classify(tiny_model(name))
    assert Counter(component for _n, _m, component, _l in found) == Counter(expected)
    assert [index for index, _ in layers] == list(range(LAYERS))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_one_forward_opens_the_expected_ranges(tiny_model, attn):
    model = tiny_model("tiny-qwen3", attn)
    rec = RangeRecorder(nvtx_on=False, record_function_on=False)
    with torch.inference_mode(), instrument(model, rec) as info:
        model(input_ids=_ids(), logits_to_keep=1)
        times = rec.take()
    calls = _calls(times)
    # the attention function once per layer, plus one causal-mask build for the model
    assert calls["attention"] == LAYERS + 1
    # apply_rotary_pos_emb once per layer, plus rotary_emb computing cos/sin once
    assert calls["rope"] == LAYERS + 1
    assert calls["qkv_proj"] == 3 * LAYERS and calls["qk_norm"] == 2 * LAYERS
    assert calls["residual"] == LAYERS and calls["mlp"] == LAYERS
    layers_seen = {key.layer for key in times if key.component == "attention" and key.detail is None}
    assert layers_seen == set(range(LAYERS))
    assert info.components >= {"embedding", "norm", "qkv_proj", "qk_norm", "rope", "attention", "o_proj",
                               "mlp", "residual", "lm_head"}


def test_llama_reports_no_qk_norm(tiny_model):
    with instrument(tiny_model("tiny-llama"), RangeRecorder()) as info:
        assert "qk_norm" not in info.components


@pytest.mark.filterwarnings("error:module forward hook")
def test_everything_is_removed_even_when_the_forward_raises(tiny_model):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.qwen3 import modeling_qwen3

    model = tiny_model("tiny-qwen3")
    rope, eager = modeling_qwen3.apply_rotary_pos_emb, modeling_qwen3.eager_attention_forward
    local_before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    sdpa_before = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def explode(_module, _args):
        raise RuntimeError("boom inside layer 1")

    bomb = model.model.layers[1].mlp.register_forward_pre_hook(explode)
    rec = RangeRecorder()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with torch.inference_mode(), instrument(model, rec):
                assert modeling_qwen3.apply_rotary_pos_emb is not rope  # patched while inside
                model(input_ids=_ids(), logits_to_keep=1)
    finally:
        bomb.remove()
    assert _hooks_left(model) == 0
    assert modeling_qwen3.apply_rotary_pos_emb is rope
    assert modeling_qwen3.eager_attention_forward is eager
    assert ALL_ATTENTION_FUNCTIONS._local_mapping == local_before
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is sdpa_before
    assert rec.depth == 0
    assert not any(hasattr(getattr(sys.modules[m.__module__], "apply_rotary_pos_emb", None), "__ttft_original__")
                   for m in [type(x) for x in model.modules()])


def test_tied_embeddings_are_one_tensor(tiny_model):
    # Gemma ties lm_head to the input embedding; a built model must too (one matrix, read once)
    model = tiny_model("tiny-gemma")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_the_public_api_names_are_the_functions():
    import profiler.measure  # noqa: F401  (imports every submodule a session would)
    from profiler import Sampling, instrument, profile_prefill

    assert callable(instrument) and instrument.__name__ == "instrument"
    assert callable(profile_prefill) and profile_prefill.__name__ == "profile_prefill"
    assert Sampling().method == "greedy"
