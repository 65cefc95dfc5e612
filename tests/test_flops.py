"""The FLOP and byte model, checked against torch's own FLOP counter and against hand arithmetic.

Conventions the assertions rest on (docs/roofline.md):
- a multiply-add is 2 FLOPs, a linear layer is its matmul alone (bias adds are not counted,
  and FlopCounterMode counts `addmm` as its matmul alone too);
- attention's *useful* FLOPs are 4·b·h·H·P with P the causal query-key pairs;
  `torch.utils.flop_counter` counts SDPA without the mask, 4·b·h·H·n² (its source says
  "We aren't accounting for causal attention here"), which is what eager attention executes.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from analyzers.cost.flops import (
    active_params,
    attention_pairs,
    component_costs,
    executed_pairs,
    kv_cache_bytes,
    non_embedding_params,
    total_params,
)
from analyzers.cost.model_spec import ModelSpec, SpecError
from tests.conftest import python_without_torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = json.loads((ROOT / "profiler" / "data" / "models.json").read_text())["models"]
TINY = ["tiny-qwen3", "tiny-llama", "tiny-qwen2", "tiny-mistral", "tiny-gemma", "tiny-phi3"]


def spec_of(name: str) -> ModelSpec:
    return ModelSpec.from_config(MODELS[name]["config"])


def costs_of(spec: ModelSpec, n: int, **kw) -> dict[str, dict[str, int]]:
    return component_costs(spec, n, **kw).set_index("component").to_dict("index")


# --- against torch.utils.flop_counter on the built tiny models ---------------------------

def _count(model, n: int) -> dict:
    """One prefill of n tokens (last-position logits) under FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    # The CPU SDPA kernel is not in torch's FLOP registry; count it with torch's own SDPA
    # formula, the one it applies to the CUDA kernels (dense: the mask is ignored).
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    ids = torch.randint(0, model.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), counter:
        model(input_ids=ids, logits_to_keep=1)
    return counter.get_flop_counts()


def _by_module(counts: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return sum(sum(ops.values()) for name, ops in counts.items() if rx.search(name))


def _by_op(counts: dict, op_name: str) -> int:
    return sum(c for op, c in counts["Global"].items() if str(op) == op_name)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("n", [64, 256])
def test_linear_flops_equal_flop_counter(tiny_model, name, n):
    spec = spec_of(name)
    counts = _count(tiny_model(name, "sdpa"), n)
    ours = costs_of(spec, n, attn="sdpa")
    # Exact, summed over the layers: q/k/v (or fused qkv_proj), o_proj, the MLP module, lm_head.
    assert ours["qkv_proj"]["flops"] == _by_module(counts, r"\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|qkv_proj)$")
    assert ours["o_proj"]["flops"] == _by_module(counts, r"\.layers\.\d+\.self_attn\.o_proj$")
    assert ours["mlp"]["flops"] == _by_module(counts, r"\.layers\.\d+\.mlp$")
    assert ours["lm_head"]["flops"] == _by_module(counts, r"\.lm_head$")  # logits_to_keep=1: m = 1
    # The counter's SDPA figure is the unmasked one, 4·b·h·H·n² a layer.
    sdpa = _by_op(counts, "aten._scaled_dot_product_flash_attention_for_cpu")
    assert sdpa == spec.layers * 4 * spec.head_dim * spec.heads * n * n
    assert sdpa == costs_of(spec, n, attn="eager")["attention"]["flops_executed"]
    # Useful attention is the causal pairs: n(n+1)/2 of the n² (no window bites at n <= 256).
    assert ours["attention"]["flops"] * 2 * n == sdpa * (n + 1)
    # Nothing the counter saw is missing from the model.
    matmuls = sum(ours[c]["flops"] for c in ("qkv_proj", "o_proj", "mlp", "lm_head"))
    assert sum(counts["Global"].values()) == matmuls + sdpa


@pytest.mark.parametrize("name", ["tiny-qwen3", "tiny-gemma"])
def test_eager_attention_matmuls_are_the_executed_flops(tiny_model, name):
    spec, n = spec_of(name), 128
    counts = _count(tiny_model(name, "eager"), n)
    # Eager runs QK^T and PV as two bmm over repeated K/V heads: every pair, all H heads.
    bmm = _by_op(counts, "aten.bmm")
    assert bmm == costs_of(spec, n, attn="eager")["attention"]["flops_executed"] == 4 * 4 * 64 * 4 * 128 * 128


def test_sliding_window_is_executed_dense_by_eager_and_masked_sdpa(tiny_model):
    # tiny-mistral: w = 1024, so at n = 1280 the window bites. transformers then hands SDPA an
    # explicit mask (no is_causal), and both eager and SDPA score every pair.
    spec, n = spec_of("tiny-mistral"), 1280
    assert spec.sliding_window == 1024
    dense = spec.layers * 4 * spec.head_dim * spec.heads * n * n
    assert _by_op(_count(tiny_model("tiny-mistral", "eager"), n), "aten.bmm") == dense
    assert _by_op(_count(tiny_model("tiny-mistral", "sdpa"), n),
                  "aten._scaled_dot_product_flash_attention_for_cpu") == dense
    for attn in ("eager", "sdpa"):
        assert costs_of(spec, n, attn=attn)["attention"]["flops_executed"] == dense
    # Useful pairs: 1024·1025/2 + 256·1024 = 524,800 + 262,144.
    assert costs_of(spec, n)["attention"]["flops"] == spec.layers * 4 * 64 * 4 * 786_944
    assert costs_of(spec, n, attn="flash_attention_2")["attention"]["flops_executed"] == spec.layers * 4 * 64 * 4 * 786_944


@pytest.mark.parametrize("name", TINY)
def test_total_params_match_the_built_model(tiny_model, name):
    model = tiny_model(name, "sdpa")
    assert total_params(spec_of(name)) == sum(p.numel() for p in model.parameters())


def test_calls_match_the_instrumented_forward(tiny_model):
    import torch

    from profiler.instrumentation import instrument

    for name in ("tiny-qwen3", "tiny-phi3", "tiny-mistral"):
        model = tiny_model(name, "sdpa")
        with torch.inference_mode(), instrument(model) as info:
            model(input_ids=torch.zeros(1, 32, dtype=torch.long), logits_to_keep=1)
        seen: dict[str, int] = {}
        for key, (_ns, calls) in info.recorder.take().items():
            seen[key.component] = seen.get(key.component, 0) + calls
        for component, row in costs_of(spec_of(name), 32).items():
            expected = 0 if component == "sampling" else row["calls"]  # sampling runs after the forward
            assert seen.get(component, 0) == expected, (name, component)


# --- by hand, for published configs ---------------------------------------------------------

def test_qwen3_8b_at_16384_tokens_by_hand():
    spec = spec_of("Qwen/Qwen3-8B")
    c = costs_of(spec, 16384)  # b = 1, bf16 (e = 2), sdpa, last-position logits
    # qkv per layer = 2·16384·4096·(32·128 + 2·8·128) = 2·16384·4096·6144 = 824,633,720,832; ×36
    assert c["qkv_proj"]["flops"] == 29_686_813_949_952
    # o per layer = 2·16384·(32·128)·4096 = 549,755,813,888; ×36
    assert c["o_proj"]["flops"] == 19_791_209_299_968
    # gated MLP per layer = 6·16384·4096·12288 = 4,947,802,324,992; ×36
    assert c["mlp"]["flops"] == 178_120_883_699_712
    # causal pairs P = 16384·16385/2 = 134,225,920; attention per layer = 4·128·32·P
    # = 2,199,157,473,280; ×36. SDPA with is_causal skips the upper triangle: executed = useful.
    assert attention_pairs(16384) == 134_225_920
    assert c["attention"]["flops"] == c["attention"]["flops_executed"] == 79_169_669_038_080
    # eager scores all 16384² pairs: 4·128·32·16384² = 4,398,046,511,104 a layer; ×36
    assert costs_of(spec, 16384, attn="eager")["attention"]["flops_executed"] == 158_329_674_399_744
    # lm_head, last position only: 2·4096·151936
    assert c["lm_head"]["flops"] == c["lm_head"]["flops_executed"] == 1_244_659_712
    # all positions (no logits_to_keep): 16384× the work executed, the useful part unchanged
    every = costs_of(spec, 16384, logits="all")["lm_head"]
    assert (every["flops"], every["flops_executed"]) == (1_244_659_712, 20_392_504_721_408)
    # Bytes floor, qkv per layer: weights 2·4096·6144 + input 2·16384·4096 + output (q, and the
    # k, v that are the KV cache) 2·16384·6144 = 50,331,648 + 134,217,728 + 201,326,592; ×36
    assert c["qkv_proj"]["bytes"] == 36 * 385_875_968 == 13_891_534_848
    # attention reads Q, K, V and writes O: 2·16384·128·(2·32 + 2·8) = 335,544,320 a layer; ×36
    assert c["attention"]["bytes"] == 12_079_595_520
    # lm_head: weights 2·151936·4096, last hidden state 2·4096, logits out 2·151936
    assert c["lm_head"]["bytes"] == 1_244_659_712 + 8_192 + 303_872
    # sampling reads one row of float32 logits and writes an int64 id: 4·151936 + 8
    assert costs_of(spec, 16384, logits_bytes=4)["sampling"]["bytes"] == 607_752
    # KV cache: 2·36·8·128·16384·2
    assert kv_cache_bytes(spec, 16384) == 2_415_919_104
    assert c["norm"]["calls"] == 73 and c["qkv_proj"]["calls"] == 108 and c["qk_norm"]["calls"] == 72


def test_qwen3_8b_parameter_count():
    spec = spec_of("Qwen/Qwen3-8B")
    # embed + untied lm_head = 2·151936·4096 = 1,244,659,712
    # a layer: q 4096·4096 + k, v 2·4096·1024 + o 4096·4096 = 41,943,040; MLP 3·4096·12288 =
    # 150,994,944; two norms 8,192; q/k norm 2·128 = 256 -> 192,946,432; ×36 = 6,946,071,552
    # final norm 4,096
    assert total_params(spec) == 1_244_659_712 + 6_946_071_552 + 4_096 == 8_190_735_360
    assert non_embedding_params(spec) == 6_946_075_648
    assert active_params(spec) == total_params(spec)


@pytest.mark.parametrize("name, params", [
    # Parameter counts the model cards and safetensors indexes publish.
    ("meta-llama/Llama-2-7b-hf", 6_738_415_616),
    ("meta-llama/Meta-Llama-3-8B", 8_030_261_248),
    ("Qwen/Qwen2.5-7B", 7_615_616_512),  # q/k/v biases included
    ("mistralai/Mistral-7B-v0.1", 7_241_732_096),
    ("google/gemma-2b", 2_506_172_416),  # tied: the vocabulary matrix once
])
def test_published_parameter_counts(name, params):
    assert total_params(spec_of(name)) == params


def test_mistral_sliding_window_by_hand():
    spec = spec_of("mistralai/Mistral-7B-v0.1")
    assert spec.sliding_window == 4096 and set(spec.layer_types) == {"sliding_attention"}
    # n = 8192, w = 4096: the first 4096 queries see 1..4096 keys, the other 4096 see 4096 each.
    # P = 4096·4097/2 + (8192 - 4096)·4096 = 8,390,656 + 16,777,216 = 25,167,872
    assert attention_pairs(8192, 4096) == 25_167_872
    c = costs_of(spec, 8192)
    assert c["attention"]["flops"] == 32 * 4 * 128 * 32 * 25_167_872 == 13_195_213_275_136
    # The window bites, so transformers gives SDPA a mask and it scores all 8192² pairs.
    assert c["attention"]["flops_executed"] == 32 * 4 * 128 * 32 * 8192 * 8192
    assert executed_pairs(8192, 4096, "flash_attention_2") == 25_167_872
    # At n <= w the window changes nothing: causal pairs.
    assert attention_pairs(4096, 4096) == attention_pairs(4096) == 8_390_656


def test_qwen2_window_is_off_unless_enabled():
    assert spec_of("Qwen/Qwen2.5-7B").sliding_window is None  # sliding_window 131072, use_sliding_window false
    config = dict(MODELS["tiny-qwen2"]["config"], use_sliding_window=True, sliding_window=16, max_window_layers=2)
    spec = ModelSpec.from_config(config)
    assert spec.layer_types == ("full_attention",) * 2 + ("sliding_attention",) * 2
    # layers 0-1 causal over 64 tokens (2080 pairs), layers 2-3 windowed (16·17/2 + 48·16 = 904)
    assert costs_of(spec, 64)["attention"]["flops"] == 4 * 64 * 4 * (2 * 2080 + 2 * 904)


def test_layer_types_from_config():
    config = dict(MODELS["tiny-llama"]["config"], sliding_window=8,
                  layer_types=["sliding_attention", "full_attention"] * 2)
    spec = ModelSpec.from_config(config)
    assert [spec.window(i) for i in range(4)] == [8, None, 8, None]
    # sliding: 8·9/2 + 24·8 = 228 pairs; full over 32 tokens: 528
    assert costs_of(spec, 32)["attention"]["flops"] == 4 * 64 * 4 * (2 * 228 + 2 * 528)
    assert costs_of(spec, 32)["attention"]["calls"] == 4 + 2  # a mask build for each attention type


def test_moe_active_experts_by_hand():
    # Qwen3-30B-A3B's published config facts, written out by hand.
    config = {"model_type": "qwen3_moe", "hidden_size": 2048, "num_hidden_layers": 48, "num_attention_heads": 32,
              "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
              "num_experts": 128, "num_experts_per_tok": 8, "vocab_size": 151936, "tie_word_embeddings": False,
              "decoder_sparse_step": 1, "mlp_only_layers": [], "use_sliding_window": False}
    spec = ModelSpec.from_config(config)
    # per token and layer: 8 experts · 6·2048·768 = 75,497,472 + router 2·2048·128 = 524,288
    # -> 76,021,760; at 4096 tokens 311,385,128,960 a layer; ×48
    assert costs_of(spec, 4096)["mlp"]["flops"] == 48 * 4096 * 76_021_760 == 14_946_486_190_080
    # params: embeddings 2·151936·2048 = 622,329,856; a layer: attention 2048·(4096 + 1024) + 4096·2048
    # = 18,874,368, q/k norms 256, norms 4,096, router 262,144, experts 128·3·2048·768 = 603,979,776
    # -> 623,120,640 ×48 = 29,909,790,720; final norm 2,048. Active: 8 experts, 37,748,736 a layer.
    assert total_params(spec) == 30_532_122_624  # the model card's "30.5B"
    assert active_params(spec) == 622_329_856 + 48 * 56_889_600 + 2_048 == 3_353_032_704  # "3.3B activated"


def test_moe_dense_layers_shared_expert_and_touched_weights():
    config = {"model_type": "qwen2_moe", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
              "intermediate_size": 256, "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2,
              "shared_expert_intermediate_size": 128, "mlp_only_layers": [0], "vocab_size": 100}
    spec = ModelSpec.from_config(config)
    assert spec.moe_layers == (False, True, True, True)
    # layer 0 dense: 6·64·256 = 98,304 a token. MoE layers: 2·6·64·32 = 24,576 + router 2·64·8 = 1,024
    # + shared 6·64·128 = 49,152 + shared gate 2·64 = 128 -> 74,880. 10 tokens.
    assert costs_of(spec, 10)["mlp"]["flops"] == 10 * (98_304 + 3 * 74_880)
    # 2 tokens route 4 slots, so at most 4 of the 8 experts' weights are read (fp16: 2 bytes).
    weights = 4 * 3 * 64 * 32 + 64 * 8 + 3 * 64 * 128 + 64  # experts, router, shared expert, its gate
    dense_weights = 3 * 64 * 256
    activations = 2 * 2 * 64 * 2  # [1, 2, 64] in and out, per layer
    assert costs_of(spec, 2)["mlp"]["bytes"] == 2 * (dense_weights + 3 * weights) + 4 * activations


def test_layers_option_gives_the_first_k_layers():
    spec = spec_of("Qwen/Qwen3-8B")
    two = costs_of(spec, 16384, layers=2)
    assert two["qkv_proj"]["flops"] == 2 * 824_633_720_832
    assert two["attention"]["flops"] == 2 * 2_199_157_473_280
    assert two["lm_head"]["flops"] == 1_244_659_712 and two["norm"]["calls"] == 5
    with pytest.raises(ValueError, match="layers 37"):
        component_costs(spec, 16, layers=37)


def test_gqa_cuts_bytes_not_flops():
    mha = ModelSpec.from_config(dict(MODELS["tiny-llama"]["config"], num_key_value_heads=4))
    gqa = spec_of("tiny-llama")  # 2 kv heads
    a, b = costs_of(mha, 128)["attention"], costs_of(gqa, 128)["attention"]
    assert a["flops"] == b["flops"]
    # Q and O: 2·128·64·4 each; K and V: 2·128·64·K each -> 4 layers
    assert (a["bytes"], b["bytes"]) == (4 * 2 * 128 * 64 * (8 + 8), 4 * 2 * 128 * 64 * (8 + 4))


def test_component_rows_and_columns():
    frame = component_costs(spec_of("tiny-llama"), 8)
    assert list(frame.columns) == ["component", "flops", "flops_executed", "bytes", "calls"]
    assert list(frame["component"]) == ["embedding", "rope", "norm", "qkv_proj", "qk_norm", "attention",
                                        "o_proj", "mlp", "residual", "lm_head", "sampling"]
    # tiny-llama has no q/k norm: its row is there with nothing in it, calls 0 marking it absent.
    assert frame.set_index("component").loc["qk_norm"].tolist() == [0, 0, 0, 0]


# --- errors and the torch-free import -----------------------------------------------------

@pytest.mark.parametrize("field", ["hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size",
                                   "intermediate_size"])
def test_missing_field_is_named(field):
    config = dict(MODELS["tiny-llama"]["config"])
    del config[field]
    with pytest.raises(SpecError, match=f"the config has no {field};"):
        ModelSpec.from_config(config)


def test_bad_configs_are_named():
    base = MODELS["tiny-llama"]["config"]
    with pytest.raises(SpecError, match="num_experts_per_tok"):
        ModelSpec.from_config(dict(base, num_local_experts=8))
    with pytest.raises(SpecError, match="num_key_value_heads 3"):
        ModelSpec.from_config(dict(base, num_key_value_heads=3))
    with pytest.raises(SpecError, match="layer_types"):
        ModelSpec.from_config(dict(base, sliding_window=8, layer_types=["full_attention"]))
    with pytest.raises(SpecError, match="num_key_value_heads is 0"):
        ModelSpec.from_config(dict(base, num_key_value_heads=0))
    with pytest.raises(SpecError, match="moe_intermediate_size"):
        ModelSpec.from_config({k: v for k, v in base.items() if k != "intermediate_size"}
                              | {"num_experts": 4, "num_experts_per_tok": 1})
    assert issubclass(SpecError, ValueError)


def test_analyzers_import_without_torch():
    done = python_without_torch("import analyzers.cost.flops, analyzers.cost.model_spec\nprint('ok')", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
