"""Which module of a live model is which component: the torch side of `analyzers.component_names`.

The rules are tables in analyzers.component_names, shared with the analysis of
traces recorded by anyone (`analyzers.trace.modules`); here they are applied to
a real nn.Module tree, where attribute names and `get_input_embeddings` are known.
A module that matches is timed as a whole, and its children are not looked at.

Order, first match wins: the user's rules (fnmatch on the qualified name), the
embedding and head the model names itself, nn.MultiheadAttention (attention,
whole), attribute names, norm classes, then the generic fallback (a Linear
directly under an attention-like module: qkv_proj, the last called o_proj, see profiler.call_order).
What no rule claims and holds no claimed module is timed too, as a `module:`
detail of `residual` (inside a layer) or `other`, so a run can say who it is.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from torch import nn

from analyzers.component_names import (
    ATTENTION_LIKE_CLASS,
    ATTENTION_ONLY,
    ATTENTION_PARENT,
    DECODER_LAYER,
    FUNCTION_RULES,
    LAYER_INDEX,
    MODULE_NAME_RULES,
    MOE_BLOCK_CLASS,
    MOE_DETAIL_RULES,
    NORM_CLASS,
    TRIVIAL_CLASS,
    UNCLAIMED_PREFIX,
    check_rules,
    layer_index,
)
from analyzers.errors import InputError

# The tables live in analyzers.component_names so a trace's module frames are named by the same rules.
__all__ = ["FUNCTION_RULES", "Plan", "classify", "plan"]

Entry = tuple[str, nn.Module, str, int | None]


@dataclass
class Plan:
    """Where hooks go: claimed modules, decoder layers, and ranges that carry a detail."""

    found: list[Entry] = field(default_factory=list)
    layers: list[tuple[int, nn.Module]] = field(default_factory=list)
    # (name, module, component, detail, layer): MoE router/experts, attention cores, unclaimed modules
    details: list[tuple[str, nn.Module, str, str | None, int | None]] = field(default_factory=list)
    # (attention-like module, its unnamed Linears, layer): named by call order (profiler.call_order)
    call_order: list[tuple[nn.Module, list[nn.Module], int | None]] = field(default_factory=list)


def classify(model: nn.Module, rules=None) -> tuple[list[Entry], list[tuple[int, nn.Module]]]:
    """Return ([(name, module, component, layer)], [(layer, decoder_layer_module)])."""
    p = plan(model, rules)
    return p.found, p.layers


def _builtin(name: str, module: nn.Module, parent: nn.Module | None) -> str | None:
    leaf = name.rsplit(".", 1)[-1]
    parent_name = name.rsplit(".", 1)[0] if "." in name else ""
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    component = MODULE_NAME_RULES.get(leaf)
    if leaf in ATTENTION_ONLY and not (ATTENTION_PARENT.search(parent_name)
                                      or (parent is not None and _attention_like(parent))):
        component = None
    if component is None and NORM_CLASS.search(type(module).__name__):
        component = "norm"
    return component


def _attention_like(module: nn.Module) -> bool:
    return bool(ATTENTION_LIKE_CLASS.search(type(module).__name__)) or any(
        isinstance(c, nn.MultiheadAttention) for c in module.children())


def _fallback_linears(module: nn.Module) -> dict[int, str]:
    """Linears directly under an attention-like module: qkv_proj, and the last declared one o_proj.

    Declaration order is the plan's guess; the hooks correct it by call order (profiler.call_order)."""
    linears = [c for n, c in module.named_children() if isinstance(c, nn.Linear) and n not in MODULE_NAME_RULES]
    return {id(c): ("o_proj" if i == len(linears) - 1 and len(linears) > 1 else "qkv_proj")
            for i, c in enumerate(linears)}


def _unknown_attention(name: str, module: nn.Module, out: Plan) -> dict[int, str]:
    """An attention-like module no rule names: its Linears' guesses, its own code as the attention core."""
    guesses = _fallback_linears(module)
    if guesses:
        out.call_order.append((module, [c for c in module.children() if id(c) in guesses], layer_index(name)))
    if ATTENTION_LIKE_CLASS.search(type(module).__name__) and not _has_own_attention_function(module):
        # the attention core is this module's own code (an MHA child would be timed itself)
        out.details.append((name, module, "attention", None, layer_index(name)))
    return guesses


def _has_own_attention_function(module: nn.Module) -> bool:
    """The module's file routes attention through a function we wrap (eager function or the interface)."""
    mod = sys.modules.get(type(module).__module__)
    return mod is not None and ("eager_attention_forward" in vars(mod) or "ALL_ATTENTION_FUNCTIONS" in vars(mod))


def plan(model: nn.Module, rules=None) -> Plan:
    """Classify every module of `model`; `rules` ({fnmatch pattern: component}) are tried first."""
    rules = check_rules(rules)
    out = Plan()
    special: dict[int, str] = {}
    for getter, component in (("get_input_embeddings", "embedding"), ("get_output_embeddings", "lm_head")):
        found = getattr(model, getter)() if hasattr(model, getter) else None
        if found is not None:
            special[id(found)] = component
    used: set[str] = set()
    claimed: list[str] = []  # prefixes of matched modules: their subtrees are skipped
    fallback: dict[int, str] = {}
    guessed: set[int] = set()
    modules = dict(model.named_modules())
    for name, module in modules.items():
        if any(name.startswith(prefix + ".") for prefix in claimed):
            continue
        if DECODER_LAYER.search(name):
            out.layers.append((layer_index(name), module))
        component = next((c for pat, c in rules if fnmatchcase(name, pat) and not used.add(pat)), None)
        parent = modules.get(name.rsplit(".", 1)[0]) if "." in name else (model if name else None)
        component = component or special.get(id(module)) or _builtin(name, module, parent)
        if component is None and id(module) in fallback:
            component = fallback[id(module)]
            guessed.add(id(module))  # named by the generic fallback: call order decides (profiler.call_order)
        if component is not None:
            out.found.append((name, module, component, layer_index(name)))
            claimed.append(name)
            if component == "mlp" and name:
                _moe_details(name, module, out)
        elif name and not DECODER_LAYER.search(name) and _attention_like(module):
            fallback.update(_unknown_attention(name, module, out))
    unmatched = [pat for pat, _c in rules if pat not in used]
    if unmatched:
        raise InputError(f"component rule pattern {unmatched[0]!r} matches no module of this "
                         f"{type(model).__name__}; patterns are fnmatch patterns on qualified names such as "
                         f"{_example(modules)!r}.")
    out.call_order = [(p, kept, layer) for p, linears, layer in out.call_order
                      if (kept := [m for m in linears if id(m) in guessed])]
    _unclaimed(modules, out)
    return out


def _example(modules: dict) -> str:
    names = [n for n in modules if LAYER_INDEX.search(n)]
    return (names[-1] if names else next(reversed(modules))) or "model"


def _moe_details(name: str, module: nn.Module, out: Plan) -> None:
    """An MoE block is `mlp`; its router and experts are details of it, so the router's share shows."""
    children = dict(module.named_children())
    if not (MOE_BLOCK_CLASS.search(type(module).__name__) or "experts" in children):
        return
    for child, detail in MOE_DETAIL_RULES.items():
        if child in children:
            out.details.append((f"{name}.{child}", children[child], "mlp", detail, layer_index(name)))


def _unclaimed(modules: dict, out: Plan) -> None:
    """The top of every subtree no rule reached: timed as a `module:` detail, so a run can name it."""
    covered = {name for name, *_ in out.found} | {name for name, _m, _c, detail, _l in out.details if detail is None}
    holders = set()  # modules with something timed (or a layer) inside them
    for name in covered | {n for n, m in modules.items() if any(m is layer for _i, layer in out.layers)}:
        parts = name.split(".")
        holders.update(".".join(parts[:i]) for i in range(len(parts) + 1))
    for name, module in modules.items():
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        if name in holders or not name or parent not in holders or TRIVIAL_CLASS.search(type(module).__name__):
            continue
        if any(name.startswith(c + ".") for c in covered if c):
            continue
        layer = layer_index(name)
        pattern = LAYER_INDEX.sub(lambda m: m.group(0).replace(m.group(1), "*"), name)  # one name for all layers
        out.details.append((name, module, "residual" if layer is not None else "other",
                            UNCLAIMED_PREFIX + pattern, layer))
