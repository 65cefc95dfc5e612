"""The Linears of an attention module no rule knows, named by the order its forward calls them.

A hand-written attention (`to_q`, `to_k`, `to_v`, `to_out`; `wq`, ..., `proj`) may declare its
Linears in any order; what is certain is that the output projection runs last, after the
attention core. Until the module's first forward has finished, declaration order stands in (the
last declared is o_proj); from then on the Linear called last is `o_proj` and the rest `qkv_proj`.
profile_prefill's warmup forwards settle the order before anything is measured.
"""
from __future__ import annotations

from torch import nn

from analyzers.vocabulary import RangeKey


class CallOrder:
    """Hooks for the Linears directly under one attention-like module."""

    def __init__(self, rec, linears: list[nn.Module], layer: int | None) -> None:
        self._rec = rec
        self._layer = layer
        self._seen: list[int] = []
        self.learned = False
        self.keys = self._keys([id(m) for m in linears])

    def _keys(self, order: list[int]) -> dict[int, RangeKey]:
        last = order[-1] if len(order) > 1 else None
        return {i: RangeKey("o_proj" if i == last else "qkv_proj", self._layer) for i in order}

    def pre(self, module, _args) -> None:
        if not self.learned and id(module) not in self._seen:
            self._seen.append(id(module))
        self._rec.push(self.keys[id(module)])

    def post(self, module, _args, _output) -> None:
        self._rec.pop_if(self.keys[id(module)])

    def parent_post(self, _module, _args, _output) -> None:
        """After the first forward that called a Linear: the last one called is the output projection."""
        if self.learned or not self._seen:
            return
        called = set(self._seen)
        never = [i for i in self.keys if i not in called]  # declared, not called: keep them as qkv_proj
        keys = self._keys(self._seen)
        keys.update({i: RangeKey("qkv_proj", self._layer) for i in never})
        self.keys, self.learned = keys, True


def hook_call_order(rec, parent: nn.Module, linears: list[nn.Module], layer: int | None, handles: list) -> CallOrder:
    order = CallOrder(rec, linears, layer)
    for linear in linears:
        handles.append(linear.register_forward_pre_hook(order.pre))
        handles.append(linear.register_forward_hook(order.post, always_call=True))
    handles.append(parent.register_forward_hook(order.parent_post))
    return order
