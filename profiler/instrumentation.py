"""Put named ranges around a model's components, and take them off again.

Module forwards get hooks; module-level functions that the modeling files
call by global name (RoPE, the eager attention function, mask builders) and
the entries of transformers' attention interface are wrapped and restored.
Nothing of the model's code or weights is edited, so logits are bit-identical.
"""
from __future__ import annotations

import functools
import sys
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

from torch import nn

from analyzers.errors import InputError
from analyzers.vocabulary import RangeKey
from profiler.call_order import hook_call_order
from profiler.collectives import COMMUNICATION
from profiler.collectives import targets as collective_targets
from profiler.component_rules import FUNCTION_RULES, plan
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


class _Patch:
    """One patched function, shared by every `instrument` block that wants it.

    The wrapper sends each call to the recorder of the model whose forward is
    running (so two models of one modeling file, instrumented at once, each
    see only their own calls); outside any forward, to the newest block's.
    The original goes back when the last block using it exits, in any order.
    """

    def __init__(self, fn, component: str, detail: str | None, restore) -> None:
        self.original, self.restore = fn, restore
        self.users: list[RangeRecorder] = []
        self.wrapper = _wrap_function(self, fn, component, detail)

    def recorder(self) -> RangeRecorder | None:
        users = self.users
        if len(users) == 1:  # the usual case, on the hot path: one block, no lookup needed
            return users[0]
        current = _RUNNING.get()
        if current is not None and any(current is user for user in users):
            return current
        return users[-1] if users else None


# (module or interface id, name) -> its patch, while any block uses it
_PATCHES: dict[tuple[int, str], _Patch] = {}
# the models inside an `instrument` block now: a second block on one is refused
_INSTRUMENTED: weakref.WeakSet = weakref.WeakSet()
# the recorder of the instrumented model whose forward is running
_RUNNING: ContextVar[RangeRecorder | None] = ContextVar("ttft_running_recorder", default=None)


def _wrap_function(patch: _Patch, fn, component: str, detail: str | None):
    keys: dict[int | None, RangeKey] = {}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        rec = patch.recorder()
        if rec is None:
            return fn(*args, **kwargs)
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


def _use_patch(slot: tuple[int, str], make, rec: RangeRecorder, restores: list) -> None:
    """Join the patch at `slot` (made by `make()` and installed if none), and leave it on exit."""
    patch = _PATCHES.get(slot)
    if patch is None:
        patch = _PATCHES[slot] = make()
    patch.users.append(rec)
    restores.append(functools.partial(_leave_patch, slot, patch, rec))


def _leave_patch(slot: tuple[int, str], patch: _Patch, rec: RangeRecorder) -> None:
    for i in range(len(patch.users) - 1, -1, -1):
        if patch.users[i] is rec:
            del patch.users[i]
            break
    if not patch.users and _PATCHES.get(slot) is patch:
        del _PATCHES[slot]
        patch.restore()


def _attention_interfaces(modeling_modules) -> list:
    """The AttentionInterface objects the model's files dispatch through."""
    seen: dict[int, object] = {}
    for mod in modeling_modules:
        interface = getattr(mod, "ALL_ATTENTION_FUNCTIONS", None)
        if interface is not None and hasattr(interface, "_local_mapping"):
            seen[id(interface)] = interface
    return list(seen.values())


def _hook_modules(model: nn.Module, rec, info: Instrumentation, handles: list, rules=None) -> None:
    """Forward hooks on every module a rule names, and on each decoder layer (its own glue: `residual`).

    Ranges with a detail (an MoE router, an unclaimed module) nest inside others; the recorder
    keeps exclusive time, so each nanosecond is counted once, under the innermost range.
    """
    where = plan(model, rules)
    found, layers = where.found, where.layers
    by_order = {id(linear) for _p, linears, _l in where.call_order for linear in linears}
    for parent, linears, layer in where.call_order:
        hook_call_order(rec, parent, linears, layer, handles)
    ranges = [(m, RangeKey(c, layer)) for _n, m, c, layer in found if id(m) not in by_order]
    ranges += [(m, RangeKey(c, layer, detail)) for _n, m, c, detail, layer in where.details]
    for module, key in ranges:
        pre, post = _module_hooks(rec, key)
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post, always_call=True))
        info.components.add(key.component)
    for layer, module in layers:
        pre, post = _layer_hooks(rec, layer)
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post, always_call=True))
    if layers:
        info.components.add("residual")
    info.components.update(c for _n, m, c, _l in found if id(m) in by_order)
    info.module_count = len(ranges) + len(layers) + len(by_order)


def _patch_functions(modeling_modules: list, rec, info: Instrumentation, restores: list) -> None:
    """Module-level functions the modeling files call by global name (RoPE, eager attention, masks)."""
    for mod in modeling_modules:
        for fname, (component, detail) in FUNCTION_RULES.items():
            slot = (id(mod), fname)
            if slot not in _PATCHES:
                original = mod.__dict__.get(fname)
                if original is None or not callable(original) or hasattr(original, "__ttft_original__"):
                    continue
            _use_patch(slot, functools.partial(_install_function, mod, fname, component, detail), rec, restores)
            info.patched_functions.append(f"{mod.__name__}.{fname}")
            info.components.add(component)


def _patch_collectives(rec, info: Instrumentation, restores: list) -> None:
    """A tensor-parallel rank: its all-reduces and gathers are `communication` (nothing without a world)."""
    for module, name in collective_targets():
        _use_patch((id(module), name), functools.partial(_install_function, module, name, COMMUNICATION, None), rec, restores)
        info.components.add(COMMUNICATION)


def _install_function(mod, fname: str, component: str, detail: str | None) -> _Patch:
    original = mod.__dict__[fname]
    patch = _Patch(original, component, detail, functools.partial(setattr, mod, fname, original))
    setattr(mod, fname, patch.wrapper)
    return patch


def _patch_attention(model: nn.Module, modeling_modules: list, rec, info: Instrumentation, restores: list) -> None:
    """The model's entry in transformers' attention interface (sdpa, flash, ...); eager is a function above."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if not impl or not isinstance(impl, str) or impl == "eager":
        return
    for interface in _attention_interfaces(modeling_modules):
        slot = (id(interface), impl)
        if slot not in _PATCHES and (impl not in interface or hasattr(interface[impl], "__ttft_original__")):
            continue
        _use_patch(slot, functools.partial(_install_attention, interface, impl), rec, restores)
        info.patched_functions.append(f"ALL_ATTENTION_FUNCTIONS[{impl!r}]")
        info.components.add("attention")


def _install_attention(interface, impl: str) -> _Patch:
    local = interface._local_mapping
    if impl in local:
        restore = functools.partial(local.__setitem__, impl, local[impl])
    else:
        restore = functools.partial(local.pop, impl, None)
    patch = _Patch(interface[impl], "attention", None, restore)
    interface[impl] = patch.wrapper
    return patch


def _running_hooks(rec: RangeRecorder):
    """Root-module hooks that say whose forward is running, for the shared function wrappers."""
    tokens: list = []

    def pre(_module, _args):
        tokens.append(_RUNNING.set(rec))

    def post(_module, _args, _output):
        _reset_running(tokens)

    return pre, post, tokens


def _reset_running(tokens: list) -> None:
    while tokens:
        try:
            _RUNNING.reset(tokens.pop())
        except ValueError:  # set in another context (thread): that context's value is its own
            pass


def _check_arguments(model, recorder) -> None:
    """Wrong types fail here, in one sentence, before anything is hooked or patched."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"instrument() needs model to be a torch.nn.Module, not {type(model).__name__}.")
    if recorder is not None and not all(callable(getattr(recorder, n, None)) for n in ("push", "pop", "unwind")):
        raise TypeError(f"instrument() needs recorder to be a RangeRecorder (or None), not {type(recorder).__name__}.")
    # a block on a model, or on a module inside it, or around it: its modules would carry two sets of hooks
    if any(model is other or _contains(other, model) or _contains(model, other) for other in list(_INSTRUMENTED)):
        raise InputError(f"this {type(model).__name__} is already inside an instrument() block; nested blocks "
                         "on one model are not supported: pass one recorder to the outer block and read it there.")


def _contains(outer: nn.Module, inner: nn.Module) -> bool:
    return any(m is inner for m in outer.modules())


@contextmanager
def instrument(model: nn.Module, recorder: RangeRecorder | None = None,
               component_rules=None) -> Iterator[Instrumentation]:
    """Instrument `model` for the duration of the block; always restores it on exit.

    `component_rules` ({fnmatch pattern on the qualified module name: component}) name
    modules the built-in rules do not know; they are tried first, and one that matches
    nothing is refused (InputError) before anything is hooked.

    A second block on the same model, while the first is open, is refused
    (InputError) before it touches anything; blocks on different models may
    overlap and exit in any order.
    """
    _check_arguments(model, recorder)
    rec = recorder if recorder is not None else RangeRecorder()
    info = Instrumentation(recorder=rec)
    handles: list = []
    restores: list = []
    pre, post, tokens = _running_hooks(rec)
    _INSTRUMENTED.add(model)
    try:
        handles.append(model.register_forward_pre_hook(pre))
        handles.append(model.register_forward_hook(post, always_call=True))
        _hook_modules(model, rec, info, handles, component_rules)
        modeling = {type(m).__module__ for m in model.modules()}
        modeling_modules = [sys.modules[n] for n in sorted(modeling) if n in sys.modules]
        _patch_functions(modeling_modules, rec, info, restores)
        _patch_attention(model, modeling_modules, rec, info, restores)
        _patch_collectives(rec, info, restores)
        yield info
    finally:
        _INSTRUMENTED.discard(model)
        _reset_running(tokens)
        rec.unwind()
        rec.layer = None
        for handle in handles:
            handle.remove()
        for restore in reversed(restores):
            restore()
