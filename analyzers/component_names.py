"""Which module or function of a model is which component: the rules as tables, shared by both sides.

The live instrumentation (`profiler.component_rules.classify`) reads a real
nn.Module tree, where a module has an attribute name (`self_attn.q_proj`); a
trace recorded by someone else with `with_modules`/`with_stack` only has
Kineto's frame names (`nn.Module: Linear_12`, the class name and an instance
counter), read by `analyzers.trace.modules`. Both must name the same kernels
the same component, so both read these tables, and this module stays free of
torch so a trace is analysed with pandas alone.

Names follow the Hugging Face modeling files (Llama, Qwen2/3, Mistral, Gemma,
Phi-3 with fused projections, MoE blocks). A module that matches is timed as
a whole, and its children are not looked at: the MLP is one range, not three.
"""
from __future__ import annotations

import re

__all__ = ["ATTENTION_CLASS", "ATTENTION_INTERFACE_FUNCTIONS", "ATTENTION_LIKE_CLASS", "ATTENTION_ONLY", "ATTENTION_PARENT",
           "CAUSAL_LM_CLASS", "DECODER_LAYER",
           "DECODER_LAYER_CLASS", "EMBEDDING_CLASS", "FRAME_FUNCTION_RULES", "FUNCTION_RULES", "LAYER_INDEX",
           "LINEAR_CLASS", "LM_HEAD_CLASS", "MLP_CLASS", "MODULE_NAME_RULES", "MOE_BLOCK_CLASS", "MOE_DETAIL_RULES", "NORM_CLASS",
           "ROTARY_CLASS", "RULE_COMPONENTS", "SAMPLER_CLASS", "TRIVIAL_CLASS", "UNCLAIMED_PREFIX", "check_rules",
           "layer_index"]

# -- attribute names (live: the module tree has them) ----------------------------------------
# Attribute name of a module (its last dotted name part) -> component.
MODULE_NAME_RULES: dict[str, str] = {
    "q_norm": "qk_norm",
    "k_norm": "qk_norm",
    "q_layernorm": "qk_norm",
    "k_layernorm": "qk_norm",
    "q_proj": "qkv_proj",
    "k_proj": "qkv_proj",
    "v_proj": "qkv_proj",
    "qkv_proj": "qkv_proj",
    "query_key_value": "qkv_proj",
    "Wqkv": "qkv_proj",
    "o_proj": "o_proj",
    "out_proj": "o_proj",
    "dense": "o_proj",  # only inside an attention module, see ATTENTION_PARENT
    "c_attn": "qkv_proj",  # GPT-2's fused q,k,v (a Conv1D)
    "c_proj": "o_proj",  # GPT-2: o_proj under `attn`; under `mlp` it is inside the MLP, claimed whole
    "wpe": "embedding",  # GPT-2's learned positions: part of embedding the tokens
    "mlp": "mlp",
    "feed_forward": "mlp",
    "block_sparse_moe": "mlp",
    "rotary_emb": "rope",
}

# `dense` and `c_proj` are also names MLPs use; they mean o_proj only under attention.
ATTENTION_ONLY: frozenset[str] = frozenset({"dense", "c_proj"})
ATTENTION_PARENT = re.compile(r"(self_attn|attention|attn)$")

# Where a decoder layer's index sits in a qualified module name.
LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|h|blocks|block)\.(\d+)(?:\.|$)")
DECODER_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|block)\.(\d+)$")

# Children of an MoE block (an `mlp` whose class says MoE, or that has `experts`): timed as details of
# `mlp` so the router's share shows, while the block stays one component.
MOE_BLOCK_CLASS = re.compile(r"(Moe|MoE|Sparse)")
MOE_DETAIL_RULES: dict[str, str] = {"gate": "router", "router": "router", "experts": "experts"}

# Generic fallback for a module no name rule knows: a class whose name says attention.
ATTENTION_LIKE_CLASS = re.compile(r"Attention|Attn")
# Modules cheaper than a hook pair in eval mode: never named as unclaimed time.
TRIVIAL_CLASS = re.compile(r"^(Dropout\d*d?|Identity|ModuleList|ModuleDict|ParameterList|ParameterDict)$")
# A unclaimed module's time is a detail of `residual` (in a layer) or `other` that starts with this.
UNCLAIMED_PREFIX = "module:"
# What a user rule (`--component-rule PATTERN=COMPONENT`) may name: a component a module can be.
RULE_COMPONENTS: tuple[str, ...] = ("embedding", "rope", "norm", "qkv_proj", "qk_norm", "attention", "o_proj", "mlp",
                                    "lm_head", "sampling")

# -- class names (both sides; a trace's module frames have nothing else) -----------------------
# Normalisation layers, by class-name suffix: `norm` (`qk_norm` when inside an attention module).
NORM_CLASS = re.compile(r"(RMSNorm|LayerNorm|Norm)$")
# The attribute-name rules above, said with class names for Kineto's `nn.Module: <Class>_<n>` frames.
# Checked in this order: a rotary embedding is not the token embedding, an MoE block is not a decoder block.
ROTARY_CLASS = re.compile(r"Rotary\w*Embedding$")  # rotary_emb -> rope
# Serving engines (vLLM, SGLang) put the head's matmul in a LogitsProcessor (their ParallelLMHead is an
# embedding subclass that is never called) and sampling in a Sampler module.
LM_HEAD_CLASS = re.compile(r"(LogitsProcessor|LMHead)$")  # -> lm_head
SAMPLER_CLASS = re.compile(r"Sampler$")  # -> sampling
EMBEDDING_CLASS = re.compile(r"Embedding$")  # the token (or position) embedding -> embedding
MLP_CLASS = re.compile(r"(MLP|Mlp|FeedForward|SparseMoeBlock|MoeBlock|MoE|Moe)$")  # mlp/feed_forward/block_sparse_moe
# self_attn: not timed itself, its children are; one inside another (vLLM's `Attention`, SGLang's
# `RadixAttention` under `LlamaAttention`) is the attention op itself -> attention.
ATTENTION_CLASS = re.compile(r"(Attention\d*|Attn)$")
DECODER_LAYER_CLASS = re.compile(r"(DecoderLayer|Block|Layer)$")  # layers.<i>: its own work is `residual`
# Projections: q/k/v/o are all `Linear` in a trace, so which is which comes from call order (see modules.py).
LINEAR_CLASS = re.compile(r"Linear|^Conv1D$")  # GPT-2 style models project with Conv1D
CAUSAL_LM_CLASS = re.compile(r"(ForCausalLM|LMHeadModel|ForConditionalGeneration)$")  # whose direct Linear is lm_head

# -- functions ---------------------------------------------------------------------------------
# Module-level functions that modeling files call by global name: (component, detail).
FUNCTION_RULES: dict[str, tuple[str, str | None]] = {
    "apply_rotary_pos_emb": ("rope", None),
    "eager_attention_forward": ("attention", None),
    "create_causal_mask": ("attention", "mask"),
    "create_sliding_window_causal_mask": ("attention", "mask"),
}

# The functions transformers registers in ALL_ATTENTION_FUNCTIONS (sdpa, flash, flex, paged). The
# live side wraps the model's entry through that interface, not by name; a trace has only the
# name, so these are what "the attention interface" looks like in python frames.
ATTENTION_INTERFACE_FUNCTIONS: frozenset[str] = frozenset({
    "sdpa_attention_forward", "flash_attention_forward", "flex_attention_forward",
    "paged_attention_forward", "sdpa_attention_paged_forward",
})

# What a trace's function frames are matched against: FUNCTION_RULES, the attention interface, and
# the torch / flash-attn entry points older modeling files call directly from the attention module
# (a trace frame names them `<built-in function scaled_dot_product_attention>`).
FRAME_FUNCTION_RULES: dict[str, tuple[str, str | None]] = {
    **FUNCTION_RULES,
    **{name: ("attention", None) for name in ATTENTION_INTERFACE_FUNCTIONS},
    "scaled_dot_product_attention": ("attention", None),
    "flash_attn_func": ("attention", None),
    "flash_attn_varlen_func": ("attention", None),
    "_flash_attention_forward": ("attention", None),
}


def layer_index(qualified_name: str) -> int | None:
    match = LAYER_INDEX.search(qualified_name)
    return int(match.group(1)) if match else None


def check_rules(rules) -> tuple[tuple[str, str], ...]:
    """A user's rules ({pattern: component} or (pattern, component) pairs) as checked pairs.

    Patterns are fnmatch patterns on the module's qualified name (`model.layers.*.mixer`), the
    spelling users already know from shells; a component outside RULE_COMPONENTS is refused here,
    a pattern that matches no module is refused when the model is classified.
    """
    from analyzers.errors import ParameterError

    if rules is None:
        return ()
    pairs = tuple(rules.items()) if isinstance(rules, dict) else tuple(tuple(p) for p in rules)
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(x, str) and x for x in pair):
            raise ParameterError("component_rules", pair, "is not a MODULE_PATTERN=COMPONENT pair",
                                 "pass {'model.layers.*.mixer': 'attention'}", quote=False)
        if pair[1] not in RULE_COMPONENTS:
            raise ParameterError("component_rules", f"{pair[0]}={pair[1]}", f"names no component ({pair[1]!r})",
                                 f"use one of {', '.join(RULE_COMPONENTS)}")
    return pairs
