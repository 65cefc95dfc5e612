"""Which module of a live model is which component: the torch side of `analyzers.component_names`.

The rules are tables in analyzers.component_names, shared with the analysis of
traces recorded by anyone (`analyzers.trace.modules`); here they are applied to
a real nn.Module tree, where attribute names and `get_input_embeddings` are known.
A module that matches is timed as a whole, and its children are not looked at.
"""
from __future__ import annotations

from torch import nn

from analyzers.component_names import (
    ATTENTION_PARENT,
    DECODER_LAYER,
    FUNCTION_RULES,
    MODULE_NAME_RULES,
    NORM_CLASS,
    layer_index,
)

# The tables live in analyzers.component_names so a trace's module frames are named by the same rules.
__all__ = ["FUNCTION_RULES", "classify"]


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
