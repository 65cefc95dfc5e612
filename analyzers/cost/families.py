"""Decoder families that are not Llama-shaped: their config key names and the shape facts they imply.

`ModelSpec.from_config` reads Llama-style keys (`hidden_size`, `num_hidden_layers`, ...). GPT-2,
GPT-J, old Falcon and others spell them differently, and their blocks differ in ways a config
leaves implicit (a two-matrix GELU MLP, LayerNorm with a bias, biases on every linear, learned
position tables, one shared norm for a parallel attention+MLP block). analyzers may not import
transformers, so the facts are copied here, each table naming the transformers class it mirrors.
"""
from __future__ import annotations

from typing import Any

# model_type -> {standard key: the family's key}. Mirrors each config class's `attribute_map` in
# transformers (GPT2Config, GPTJConfig); Falcon's entry mirrors FalconConfig's old-RW-config keys
# (`n_embed`, `n_head`, `n_layer`, `n_head_kv`), which its __init__ used to pop into the standard names.
ATTRIBUTE_MAP: dict[str, dict[str, str]] = {
    "gpt2": {"hidden_size": "n_embd", "max_position_embeddings": "n_positions",
             "num_attention_heads": "n_head", "num_hidden_layers": "n_layer", "intermediate_size": "n_inner"},
    "gptj": {"hidden_size": "n_embd", "max_position_embeddings": "n_positions",
             "num_attention_heads": "n_head", "num_hidden_layers": "n_layer", "intermediate_size": "n_inner"},
    "falcon": {"hidden_size": "n_embed", "num_attention_heads": "n_head", "num_hidden_layers": "n_layer",
               "num_kv_heads": "n_head_kv", "intermediate_size": "ffn_hidden_size"},
    "opt": {"intermediate_size": "ffn_dim"},
}

# Families whose MLP is two matrices with an activation between (no gate), whose norms are LayerNorm
# with a bias, and what each config class defaults. Keys: bias facts (`qkv`, `o`, `mlp`, `lm_head`),
# `fused` (one q/k/v matmul), `rotary` (fraction of head_dim rotated; 0 = no RoPE), `positions`
# (learned absolute position rows beyond max_position_embeddings, None = no table), `norms` (per layer),
# `mlp_ratio` (intermediate = ratio x hidden when the config gives none), `tied` (tie_word_embeddings default).
NON_LLAMA: dict[str, dict[str, Any]] = {
    # GPT2Model: Conv1D c_attn/c_proj/c_fc with biases, wpe [n_positions, d], ln_1/ln_2, tied.
    "gpt2": dict(qkv=True, o=True, mlp=True, lm_head=False, fused=True, rotary=0.0, positions=0, norms=2,
                 mlp_ratio=4, tied=True),
    # GPTNeoXModel: query_key_value and dense biased by `attention_bias` (default True), rotary_pct 0.25,
    # two LayerNorms even when `use_parallel_residual`, untied embed_out without bias.
    "gpt_neox": dict(qkv=None, o=None, mlp=True, lm_head=False, fused=True, rotary=0.25, positions=None, norms=2,
                     mlp_ratio=4, tied=False),
    # FalconModel: `bias` on every linear (default False); norms depend on the architecture flags (see below).
    "falcon": dict(qkv=None, o=None, mlp=None, lm_head=False, fused=True, rotary=1.0, positions=None, norms=2,
                   mlp_ratio=4, tied=True),
    # PhiModel (phi-2): biased q/k/v/dense/fc1/fc2 and lm_head, partial_rotary_factor 0.5, one input_layernorm
    # feeding attention and MLP in parallel.
    "phi": dict(qkv=True, o=True, mlp=True, lm_head=True, fused=False, rotary=0.5, positions=None, norms=1,
                mlp_ratio=4, tied=False),
    # GPTJModel: q/k/v/out_proj without bias, fc_in/fc_out and lm_head with bias, rotary_dim 64, one ln_1.
    "gptj": dict(qkv=False, o=False, mlp=True, lm_head=True, fused=False, rotary=None, positions=None, norms=1,
                 mlp_ratio=4, tied=False),
    # OPTModel: `enable_bias` everywhere, a learned position table with OPT's offset of 2 rows, ReLU MLP, tied.
    "opt": dict(qkv=None, o=None, mlp=None, lm_head=False, fused=False, rotary=0.0, positions=2, norms=2,
                mlp_ratio=4, tied=True),
}

# Which config key switches the biases a family leaves to the config, and its default there.
BIAS_KEY: dict[str, tuple[str, bool]] = {"gpt_neox": ("attention_bias", True), "falcon": ("bias", False),
                                         "opt": ("enable_bias", True)}


def canonical(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` with the standard key names filled in from the family's own names."""
    aliases = ATTRIBUTE_MAP.get(str(config.get("model_type") or ""), {})
    out = dict(config)
    for standard, own in aliases.items():
        if out.get(standard) is None and out.get(own) is not None:
            out[standard] = out[own]
    return out


def falcon_heads(config: dict[str, Any], heads: int) -> tuple[int, int]:
    """(K/V heads, norms a layer), as FalconAttention and FalconDecoderLayer resolve them."""
    if config.get("new_decoder_architecture"):
        kv = config.get("num_kv_heads") or heads
        return int(kv), int(config.get("num_ln_in_parallel_attn") or 2)
    kv = 1 if config.get("multi_query", True) else heads
    return kv, 1 if config.get("parallel_attn", True) else 2


def family_facts(config: dict[str, Any], model_type: str, hidden: int, head_dim: int) -> dict[str, Any]:
    """The ModelSpec fields a non-Llama family implies; an empty dict for Llama-shaped configs."""
    facts = NON_LLAMA.get(model_type)
    if facts is None:
        return {}
    key, default = BIAS_KEY.get(model_type, ("", False))
    switch = bool(config.get(key, default)) if key else False
    bias = {k: switch if facts[k] is None else facts[k] for k in ("qkv", "o", "mlp")}
    rotary = facts["rotary"]
    if model_type == "falcon" and config.get("alibi"):
        rotary = 0.0
    elif model_type == "gptj":
        rotary = None  # GPT-J names the width itself
    factor = config.get("partial_rotary_factor", config.get("rotary_pct", rotary))
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if isinstance(rope, dict) and rope.get("partial_rotary_factor") is not None:
        factor = rope["partial_rotary_factor"]
    rotary_dim = int(config.get("rotary_dim", 64)) if factor is None else int(head_dim * float(factor))
    positions = facts["positions"]
    return dict(
        gated_mlp=False, norm_bias=True, qkv_bias=bias["qkv"], o_bias=bias["o"], mlp_bias=bias["mlp"],
        lm_head_bias=facts["lm_head"], fused_qkv=facts["fused"], rotary_dim=rotary_dim,
        norms_per_layer=facts["norms"], default_intermediate=facts["mlp_ratio"] * hidden,
        tied_default=facts["tied"], learned_positions=None if positions is None else positions,
        parallel_block=bool(config.get("use_parallel_residual", True)) if model_type == "gpt_neox"
        else bool(config.get("parallel_attn", True)) if model_type == "falcon"
        else model_type in ("phi", "gptj"),
    )


def describe(spec: Any) -> str:
    """A short family label for listings: block shape and MoE routing at a glance."""
    parts = ["gated MLP" if spec.gated_mlp else "2-matrix MLP"]
    if spec.parallel_block:
        parts.append("parallel")
    if spec.learned_positions:
        parts.append("learned pos")
    elif spec.rotary_dim is not None and spec.rotary_dim < spec.head_dim:
        parts.append(f"rope {spec.rotary_dim}/{spec.head_dim}")
    if spec.num_experts:
        parts.insert(0, f"MoE {spec.num_experts}x top-{spec.experts_per_token}")
    return ", ".join(parts)
