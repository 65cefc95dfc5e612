"""Non-Llama decoders (GPT-2, GPT-NeoX, Phi-2, Falcon) and MoE in the cost model.

Matmul FLOPs are checked against torch.utils.flop_counter.FlopCounterMode on tiny models built
from the built-in configs (eager attention, float32, CPU); parameter counts against published figures.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzers.cost.flops import active_params, component_costs, total_params
from analyzers.cost.model_spec import ModelSpec, SpecError

ROOT = Path(__file__).resolve().parents[1]
MODELS = json.loads((ROOT / "profiler" / "data" / "models.json").read_text())["models"]
DENSE_TINY = ["tiny-gpt2", "tiny-neox", "tiny-phi2", "tiny-falcon"]


def spec_of(name: str) -> ModelSpec:
    return ModelSpec.from_config(MODELS[name]["config"])


def _built(name: str):
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    config = dict(MODELS[name]["config"])
    config.pop("torch_dtype", None)
    hf = AutoConfig.for_model(config.pop("model_type"), **config)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(hf, attn_implementation="eager", dtype=torch.float32).eval()


@pytest.mark.parametrize("name", DENSE_TINY)
def test_matmul_flops_equal_flop_counter(name):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model, spec, n = _built(name), spec_of(name), 64
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(input_ids=torch.arange(n).unsqueeze(0), logits_to_keep=1)
    costs = component_costs(spec, n, attn="eager", dtype_bytes=4).set_index("component")
    # Every matmul the counter saw: projections, the MLP's two matrices, lm_head on one position,
    # and eager attention's QK^T and PV over all n² pairs (4·h·H FLOPs a pair, a layer).
    ours = int(costs.loc[["qkv_proj", "o_proj", "mlp", "lm_head"], "flops"].sum())
    attention = int(costs.loc["attention", "flops_executed"])
    assert attention == spec.layers * 4 * spec.head_dim * spec.heads * n * n
    assert sum(counter.get_flop_counts()["Global"].values()) == ours + attention
    assert total_params(spec) == sum(p.numel() for p in model.parameters())


def test_family_shapes_read_from_their_own_key_names():
    gpt2, neox, phi, falcon = (spec_of(n) for n in ("gpt2", "EleutherAI/pythia-1.4b", "microsoft/phi-2",
                                                    "tiiuae/falcon-7b"))
    assert (gpt2.layers, gpt2.hidden, gpt2.heads, gpt2.intermediate) == (12, 768, 12, 3072)  # n_inner None: 4·d
    assert gpt2.rotary_dim == 0 and gpt2.learned_positions == 1024 and gpt2.tied_embeddings
    assert neox.rotary_dim == 32 and neox.parallel_block and neox.norms_per_layer == 2  # 0.25 · 128
    assert phi.rotary_dim == 32 and phi.norms_per_layer == 1 and phi.lm_head_bias  # 0.4 · 80
    assert (falcon.kv_heads, falcon.norms_per_layer, falcon.intermediate) == (1, 1, 4 * 4544)
    # No RoPE in GPT-2: nothing to cost, no range recorded.
    rope = component_costs(gpt2, 128).set_index("component").loc["rope"]
    assert (rope["flops"], rope["calls"]) == (0, 0)


# Published totals. gpt2: 124,439,808 (sum of numel of openai-community/gpt2, tied wte counted once, as
# in HF's model card "124M"); pythia-1.4b: 1,414,647,808 (EleutherAI/pythia README, "Total params");
# phi-2: 2,779,683,840 (microsoft/phi-2 safetensors metadata, "2.78B"); falcon-7b: 6,921,720,704
# (tiiuae/falcon-7b safetensors metadata, "6.92B"); Mixtral-8x7B: 46,702,792,704 total and
# 12,879,925,248 active (Mistral AI's announcement: 46.7B total, 12.9B per token; the exact integers are
# the safetensors count and that count with 2 of 8 experts).
@pytest.mark.parametrize("name,total,active", [
    ("gpt2", 124_439_808, 124_439_808),
    ("EleutherAI/pythia-1.4b", 1_414_647_808, 1_414_647_808),
    ("microsoft/phi-2", 2_779_683_840, 2_779_683_840),
    ("tiiuae/falcon-7b", 6_921_720_704, 6_921_720_704),
    ("mistralai/Mixtral-8x7B-v0.1", 46_702_792_704, 12_879_925_248),
])
def test_published_parameter_counts(name, total, active):
    spec = spec_of(name)
    assert (total_params(spec), active_params(spec)) == (total, active)


def test_qwen3_30b_a3b_at_the_model_cards_precision():
    # Qwen/Qwen3-30B-A3B model card: "Number of Parameters: 30.5B in total and 3.3B activated". Our
    # counts are 30,532,122,624 and 3,353,032,704: the card truncates to one decimal (3.35 -> 3.3).
    spec = spec_of("Qwen/Qwen3-30B-A3B")
    assert (total_params(spec), active_params(spec)) == (30_532_122_624, 3_353_032_704)
    assert (total_params(spec) // 10**8, active_params(spec) // 10**8) == (305, 33)


def test_moe_flops_by_hand():
    # tiny-mixtral: d = 256, 8 experts of width 512, top-2, 4 layers, every layer MoE.
    # A token runs its 2 experts (gate, up, down: 3 matmuls of 2·d·I each) and the router (2·d·E):
    # 2·6·256·512 + 2·256·8 = 1,572,864 + 4,096 = 1,576,960 FLOPs a token a layer.
    spec, n = spec_of("tiny-mixtral"), 100
    mlp = component_costs(spec, n).set_index("component").loc["mlp", "flops"]
    assert mlp == 4 * n * 1_576_960
    # Parameters: per layer 8·3·256·512 experts + 256·8 router = 3,147,776; active keeps 2 of 8 experts.
    assert total_params(spec) - active_params(spec) == 4 * 6 * 3 * 256 * 512


def test_moe_without_top_k_is_named():
    config = dict(MODELS["tiny-mixtral"]["config"])
    del config["num_experts_per_tok"]
    with pytest.raises(SpecError, match="num_experts_per_tok") as info:
        ModelSpec.from_config(config)
    assert str(info.value).count(". ") == 0


def test_an_unknown_architecture_names_every_missing_field_and_the_rule_flag(tmp_path):
    """A config spelt no way we know: one sentence listing what is missing and how to name modules."""
    from tests.conftest import cli

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "mystery", "vocab_size": 100}))
    done = cli("--model", str(tmp_path / "m"), "--len", "16")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "num_hidden_layers, hidden_size, num_attention_heads" in line and "--component-rule" in line
