"""Which module of a model is which component: facts as a table, not branches.

Names follow the Hugging Face modeling files (Llama, Qwen2/3, Mistral, Gemma,
Phi-3 with fused projections). A module that matches is timed as a whole, and
its children are not looked at: the MLP is one range, not three.
"""
from __future__ import annotations

import re

from torch import nn

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
    "mlp": "mlp",
    "feed_forward": "mlp",
    "block_sparse_moe": "mlp",
    "rotary_emb": "rope",
}

# `dense` is also a name MLPs use; it means o_proj only under attention.
ATTENTION_PARENT = re.compile(r"(self_attn|attention|attn)$")

# Class-name suffixes for normalisation layers.
NORM_CLASS = re.compile(r"(RMSNorm|LayerNorm|Norm)$")

# Where a decoder layer's index sits in a qualified module name.
LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|h|blocks|block)\.(\d+)(?:\.|$)")
DECODER_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|block)\.(\d+)$")

# Module-level functions that modeling files call by global name.
FUNCTION_RULES: dict[str, tuple[str, str | None]] = {
    "apply_rotary_pos_emb": ("rope", None),
    "eager_attention_forward": ("attention", None),
    "create_causal_mask": ("attention", "mask"),
    "create_sliding_window_causal_mask": ("attention", "mask"),
}


def layer_index(qualified_name: str) -> int | None:
    match = LAYER_INDEX.search(qualified_name)
    return int(match.group(1)) if match else None


def classify(model: nn.Module) -> tuple[list[tuple[str, nn.Module, str, int | None]], list[tuple[int, nn.Module]]]:
    """Return ([(name, module, component, layer)], [(layer, decoder_layer_module)])."""
    found: list[tuple[str, nn.Module, str, int | None]] = []
    layers: list[tuple[int, nn.Module]] = []
    special: dict[int, str] = {}
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if embed is not None:
        special[id(embed)] = "embedding"
    if head is not None:
        special[id(head)] = "lm_head"
    claimed: list[str] = []  # prefixes of matched modules: their subtrees are skipped
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in claimed):
            continue
        if DECODER_LAYER.search(name):
            layers.append((layer_index(name), module))
        component = special.get(id(module))
        if component is None:
            leaf = name.rsplit(".", 1)[-1]
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            component = MODULE_NAME_RULES.get(leaf)
            if leaf == "dense" and not ATTENTION_PARENT.search(parent):
                component = None
            if component is None and NORM_CLASS.search(type(module).__name__):
                component = "norm"
        if component is not None:
            found.append((name, module, component, layer_index(name)))
            claimed.append(name)
    return found, layers
