"""Built-in configs are facts: check them against figures published on the model cards."""
from __future__ import annotations

import pytest
import torch

from analyzers.errors import InputError as UsageError
from profiler.build import estimate_bytes, truncated_config
from profiler.catalog import builtin_names, resolve

REQUIRED = ["Qwen/Qwen3-8B", "meta-llama/Llama-2-7b-hf", "meta-llama/Meta-Llama-3-8B", "Qwen/Qwen2.5-7B",
            "mistralai/Mistral-7B-v0.1"]


def _param_count(name: str) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = dict(resolve(name).config)
    config = AutoConfig.for_model(config.pop("model_type"), **config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def test_required_models_are_built_in():
    assert set(REQUIRED) <= set(builtin_names())


def test_qwen3_8b_config_facts():
    c = resolve("Qwen/Qwen3-8B").config
    assert (c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"],
            c["head_dim"], c["intermediate_size"], c["vocab_size"]) == (36, 4096, 32, 8, 128, 12288, 151936)
    assert c["tie_word_embeddings"] is False
    assert c["max_position_embeddings"] == 40960 and c["rope_theta"] == 1_000_000


@pytest.mark.parametrize("name,published", [
    # exact totals from the published safetensors index / model cards
    ("meta-llama/Llama-2-7b-hf", 6_738_415_616),
    ("meta-llama/Meta-Llama-3-8B", 8_030_261_248),
    ("mistralai/Mistral-7B-v0.1", 7_241_732_096),
    # model cards give rounded figures: Qwen3-8B "8.2B", Qwen2.5-7B "7.61B"
    ("Qwen/Qwen3-8B", 8.2e9),
    ("Qwen/Qwen2.5-7B", 7.61e9),
])
def test_parameter_counts_match_the_model_cards(name, published):
    count = _param_count(name)
    if isinstance(published, int):
        assert count == published
    else:
        assert count == pytest.approx(published, rel=0.01)


def test_unknown_model_suggests_the_closest_built_ins():
    with pytest.raises(UsageError, match="Qwen/Qwen3-8B"):
        resolve("Qwen/Qwen3-8C")


def test_local_folder_without_config_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no config.json"):
        resolve(str(tmp_path))


def test_local_folder_with_config_is_used(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 2}')
    source = resolve(str(tmp_path))
    assert source.kind == "local" and source.random_weights and source.config["num_hidden_layers"] == 2


def test_layers_are_cut_and_checked():
    config = resolve("Qwen/Qwen3-8B").config
    cut, built, total = truncated_config(config, 2)
    assert (cut["num_hidden_layers"], built, total) == (2, 2, 36)
    assert config["num_hidden_layers"] == 36  # the table itself is untouched
    for bad in (0, 37):
        with pytest.raises(UsageError, match="outside 1..36"):
            truncated_config(config, bad)


def test_memory_estimate_counts_weights_and_eager_scores():
    config = resolve("meta-llama/Llama-2-7b-hf").config
    # weights: 6,738,415,616 params x 2 bytes (the estimate leaves out the norms' 2*d per layer
    # it double counts, a rounding of < 0.01%)
    base = estimate_bytes(config, 1, 1, "float16", "sdpa")
    assert base == pytest.approx(6_738_415_616 * 2, rel=1e-3)
    # eager at n=4096 adds H*n*n scores in fp16 plus their fp32 softmax: 32 * 4096^2 * (2 + 4) bytes
    eager = estimate_bytes(config, 4096, 1, "float16", "eager") - estimate_bytes(config, 4096, 1, "float16", "sdpa")
    assert eager == 32 * 4096 * 4096 * 6


def test_local_folder_with_safetensors_loads_the_real_weights(tmp_path, tiny_model):
    from profiler.build import build

    saved = tiny_model("tiny-llama")
    saved.save_pretrained(tmp_path / "m")
    source = resolve(str(tmp_path / "m"))
    assert source.kind == "local" and not source.random_weights
    loaded = build(source, None, "float32", "cpu", "sdpa")
    for (name, a), (_, b) in zip(saved.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # --layers on real weights keeps the first layers' weights
    two = build(source, 2, "float32", "cpu", "sdpa")
    assert len(two.model.layers) == 2
    assert torch.equal(two.model.layers[1].mlp.up_proj.weight, saved.model.layers[1].mlp.up_proj.weight)


def test_hub_id_in_the_local_cache_wins_over_the_table(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "models--Qwen--Qwen3-8B" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--Qwen--Qwen3-8B" / "refs").mkdir()
    (tmp_path / "models--Qwen--Qwen3-8B" / "refs" / "main").write_text("abc123")
    (snapshot / "config.json").write_text('{"model_type": "qwen3", "num_hidden_layers": 3}')
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    source = resolve("Qwen/Qwen3-8B")
    assert source.kind == "hf-cache" and source.config["num_hidden_layers"] == 3
    assert source.random_weights  # config cached, no safetensors
    (snapshot / "model.safetensors").write_bytes(b"")
    assert not resolve("Qwen/Qwen3-8B").random_weights


def test_a_dtype_the_device_cannot_run_is_one_sentence():
    from profiler.device import check_dtype_runs

    # the meta device has no data to read back: the trial matmul fails as an unsupported dtype would
    with pytest.raises(UsageError, match="does not run on meta"):
        check_dtype_runs("float16", "meta")


@pytest.mark.parametrize("name, params", [
    ("gpt2", 124_439_808), ("EleutherAI/pythia-1.4b", 1_414_647_808), ("microsoft/phi-2", 2_779_683_840),
    ("tiiuae/falcon-7b", 6_921_720_704), ("mistralai/Mixtral-8x7B-v0.1", 46_702_792_704),
])
def test_memory_estimate_reads_every_family(name, params):
    # At one token the estimate is the weights (published parameter counts, see test_families_cost) in
    # float16, plus ~66 KB of activations and cache (GPT-2: < 0.03%); GPT-2 and Falcon name their fields n_embd/n_head.
    assert estimate_bytes(resolve(name).config, 1, 1, "float16", "sdpa") == pytest.approx(params * 2, rel=1e-3)
