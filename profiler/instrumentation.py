"""Put named ranges around a model's components, and take them off again.

Module forwards get hooks; module-level functions that the modeling files
call by global name (RoPE, the eager attention function, mask builders) and
the entries of transformers' attention interface are wrapped and restored.
Nothing of the model's code or weights is edited, so logits are bit-identical.
"""
from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from torch import nn

from analyzers.vocabulary import RangeKey
from profiler.component_rules import FUNCTION_RULES, classify
from profiler.recorders.host import RangeRecorder


@dataclass
class Instrumentation:
    """What `instrument` put in place: the recorder and what it found."""

    recorder: RangeRecorder
    components: set[str] = field(default_factory=set)
    module_count: int = 0
    patched_functions: list[str] = field(default_factory=list)


def _module_hooks(rec: RangeRecorder, key: RangeKey):
    def pre(_module, _args):
        rec.push(key)

    def post(_module, _args, _output):
        rec.pop_if(key)

    return pre, post


def _layer_hooks(rec: RangeRecorder, layer: int):
    key = RangeKey("residual", layer)

    def pre(_module, _args):
        rec.layer = layer
        rec.push(key)

    def post(_module, _args, _output):
        rec.pop_if(key)
        rec.layer = None

    return pre, post


def _wrap_function(rec: RangeRecorder, fn, component: str, detail: str | None):
    keys: dict[int | None, RangeKey] = {}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        layer = rec.layer
        key = keys.get(layer)
        if key is None:
            key = keys[layer] = RangeKey(component, layer, detail)
        rec.push(key)
        try:
            return fn(*args, **kwargs)
        finally:
            rec.pop()

    wrapper.__ttft_original__ = fn
    return wrapper


def _attention_interfaces(modeling_modules) -> list:
    """The AttentionInterface objects the model's files dispatch through."""
    seen: dict[int, object] = {}
    for mod in modeling_modules:
        interface = getattr(mod, "ALL_ATTENTION_FUNCTIONS", None)
        if interface is not None and hasattr(interface, "_local_mapping"):
            seen[id(interface)] = interface
    return list(seen.values())


def _hook_modules(model: nn.Module, rec, info: Instrumentation, handles: list) -> None:
    """Forward hooks on every module a rule names, and on each decoder layer (its own glue: `residual`)."""
    found, layers = classify(model)
    for _name, module, component, layer in found:
        pre, post = _module_hooks(rec, RangeKey(component, layer))
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post, always_call=True))
        info.components.add(component)
    for layer, module in layers:
        pre, post = _layer_hooks(rec, layer)
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post, always_call=True))
    if layers:
        info.components.add("residual")
    info.module_count = len(found) + len(layers)


def _patch_functions(modeling_modules: list, rec, info: Instrumentation, restores: list) -> None:
    """Module-level functions the modeling files call by global name (RoPE, eager attention, masks)."""
    for mod in modeling_modules:
        for fname, (component, detail) in FUNCTION_RULES.items():
            original = mod.__dict__.get(fname)
            if original is None or not callable(original) or hasattr(original, "__ttft_original__"):
                continue
            setattr(mod, fname, _wrap_function(rec, original, component, detail))
            restores.append(functools.partial(setattr, mod, fname, original))
            info.patched_functions.append(f"{mod.__name__}.{fname}")
            info.components.add(component)


def _patch_attention(model: nn.Module, modeling_modules: list, rec, info: Instrumentation, restores: list) -> None:
    """The model's entry in transformers' attention interface (sdpa, flash, ...); eager is a function above."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if not impl or impl == "eager":
        return
    for interface in _attention_interfaces(modeling_modules):
        if impl not in interface:
            continue
        had_local = impl in interface._local_mapping
        previous = interface._local_mapping.get(impl)
        interface[impl] = _wrap_function(rec, interface[impl], "attention", None)
        info.patched_functions.append(f"ALL_ATTENTION_FUNCTIONS[{impl!r}]")
        info.components.add("attention")
        if had_local:
            restores.append(functools.partial(interface._local_mapping.__setitem__, impl, previous))
        else:
            restores.append(functools.partial(interface._local_mapping.pop, impl, None))


@contextmanager
def instrument(model: nn.Module, recorder: RangeRecorder | None = None) -> Iterator[Instrumentation]:
    """Instrument `model` for the duration of the block; always restores it on exit."""
    rec = recorder if recorder is not None else RangeRecorder()
    info = Instrumentation(recorder=rec)
    handles: list = []
    restores: list = []
    try:
        _hook_modules(model, rec, info, handles)
        modeling = {type(m).__module__ for m in model.modules()}
        modeling_modules = [sys.modules[n] for n in sorted(modeling) if n in sys.modules]
        _patch_functions(modeling_modules, rec, info, restores)
        _patch_attention(model, modeling_modules, rec, info, restores)
        yield info
    finally:
        rec.unwind()
        rec.layer = None
        for handle in handles:
            handle.remove()
        for restore in reversed(restores):
            restore()
