"""The Python API under misuse: nested and overlapping `instrument` blocks, wrong argument types.

A profiler that leaves a wrapper behind silently changes every later run in
the process, and one that fails deep inside torch on a typo costs the user a
debugging session; these pin both down.
"""
from __future__ import annotations

import sys
from collections import Counter

import pytest
import torch

from analyzers.errors import InputError
from profiler import profile_prefill
from profiler.instrumentation import instrument
from profiler.recorders.host import RangeRecorder


def _ids(n=32, vocab=4096):
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(0))


def _components(rec: RangeRecorder) -> Counter:
    """Calls per component inside the decoder layers (4 in every tiny model: one rope, one attention each)."""
    out = Counter()
    for key, (_ns, calls) in rec.take().items():
        if key.layer is not None:
            out[key.component] += calls
    return out


def _hooks_left(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _patchable_state(models) -> dict:
    """Every module-level function and attention entry `instrument` may touch, as it is now."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from profiler.component_rules import FUNCTION_RULES

    state = {"local": dict(ALL_ATTENTION_FUNCTIONS._local_mapping), "sdpa": ALL_ATTENTION_FUNCTIONS["sdpa"]}
    for model in models:
        for name in {type(m).__module__ for m in model.modules()}:
            mod = sys.modules[name]
            for fname in FUNCTION_RULES:
                if fname in mod.__dict__:
                    state[(name, fname)] = mod.__dict__[fname]
    return state


def test_nested_block_on_one_model_is_refused_and_leaves_the_outer_intact(tiny_model):
    model = tiny_model("tiny-llama")
    before = _patchable_state([model])
    outer = RangeRecorder()
    with torch.inference_mode(), instrument(model, outer):
        inside = _patchable_state([model])
        hooks = _hooks_left(model)
        with pytest.raises(InputError, match="already inside an instrument"):
            with instrument(model, RangeRecorder()):
                pass
        assert _patchable_state([model]) == inside and _hooks_left(model) == hooks  # refusal touched nothing
        model(input_ids=_ids(), logits_to_keep=1)
        seen = _components(outer)
    assert seen["rope"] == 4 and seen["attention"] == 4  # the outer block still records every call
    assert _patchable_state([model]) == before and _hooks_left(model) == 0
    with instrument(model, RangeRecorder()):  # and after the outer exits, a new block is allowed again
        pass


@pytest.mark.parametrize("inner", ["decoder", "layer"])
def test_a_block_on_a_part_of_an_instrumented_model_is_refused(tiny_model, inner):
    model = tiny_model("tiny-llama")
    part = model.model if inner == "decoder" else model.model.layers[0]
    with instrument(model, RangeRecorder()):
        with pytest.raises(InputError, match="already inside"):
            instrument(part).__enter__()
    with instrument(part, RangeRecorder()):  # and the other way round
        with pytest.raises(InputError, match="already inside"):
            instrument(model).__enter__()
    assert _hooks_left(model) == 0


@pytest.mark.parametrize("pair", [("tiny-llama", "tiny-qwen2"), ("tiny-llama", "tiny-llama-eager")])
@pytest.mark.parametrize("order", ["lifo", "fifo"])
def test_overlapping_blocks_on_two_models_restore_everything_in_any_exit_order(tiny_model, pair, order):
    models = [tiny_model("tiny-llama", "eager") if n == "tiny-llama-eager" else tiny_model(n) for n in pair]
    before = _patchable_state(models)
    recs = [RangeRecorder(), RangeRecorder()]
    blocks = [instrument(m, r) for m, r in zip(models, recs, strict=True)]
    with torch.inference_mode():
        for block in blocks:
            block.__enter__()
        try:
            models[0](input_ids=_ids(), logits_to_keep=1)
            first, second = _components(recs[0]), _components(recs[1])
            assert first["rope"] == 4 and first["attention"] == 4
            assert second["rope"] == 0 and second["attention"] == 0  # calls go to the model that made them
            models[1](input_ids=_ids(), logits_to_keep=1)
            assert _components(recs[1])["rope"] == 4 and _components(recs[0])["rope"] == 0
        finally:
            for block in (blocks if order == "fifo" else reversed(blocks)):
                block.__exit__(None, None, None)
    assert _patchable_state(models) == before
    assert all(_hooks_left(m) == 0 for m in models)


def test_the_remaining_block_keeps_recording_after_the_other_exits(tiny_model):
    a, b = tiny_model("tiny-llama"), tiny_model("tiny-llama", "eager")
    rec_b = RangeRecorder()
    with torch.inference_mode():
        block_a = instrument(a, RangeRecorder())
        block_a.__enter__()
        with instrument(b, rec_b):
            block_a.__exit__(None, None, None)
            b(input_ids=_ids(), logits_to_keep=1)
            assert _components(rec_b)["rope"] == 4


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda m: instrument(42).__enter__(), TypeError, "model to be a torch.nn.Module, not int"),
    (lambda m: instrument(m, recorder="rec").__enter__(), TypeError, "recorder to be a RangeRecorder"),
    (lambda m: profile_prefill("not a model"), TypeError, "model to be a torch.nn.Module, not str"),
    (lambda m: profile_prefill(m, "16"), TypeError, "seq_len to be an int, not str"),
    (lambda m: profile_prefill(m, 16.0), TypeError, "seq_len to be an int, not float"),
    (lambda m: profile_prefill(m, True), TypeError, "seq_len to be an int, not bool"),
    (lambda m: profile_prefill(m, 16, repeat="3"), TypeError, "repeat to be an int"),
    (lambda m: profile_prefill(m, 16, vocab_size=1.5), TypeError, "vocab_size to be an int"),
    (lambda m: profile_prefill(m, 16, sampling=0.7), TypeError, "sampling to be a Sampling"),
    (lambda m: profile_prefill(m, 16, telemetry_interval_ms="10"), TypeError, "telemetry_interval_ms"),
    (lambda m: profile_prefill(m, 16, repeats=3), TypeError, "unknown option 'repeats'"),
    (lambda m: profile_prefill(m, 0), InputError, "seq_len 0 must be at least 1"),
    (lambda m: profile_prefill(torch.nn.Linear(2, 2), 16), InputError, "no config.vocab_size"),
    (lambda m: profile_prefill(torch.nn.ReLU(), 16), InputError, "has no parameters"),
])
def test_wrong_arguments_fail_in_one_sentence_naming_the_argument(tiny_model, call, error, words):
    model = tiny_model("tiny-llama")
    before = _patchable_state([model])
    with pytest.raises(error, match=words.replace("(", r"\(")) as caught:
        call(model)
    assert "\n" not in str(caught.value) and issubclass(caught.type, error)
    assert _patchable_state([model]) == before and _hooks_left(model) == 0


def test_instrumentation_keeps_logits_bit_identical_with_two_blocks_open(tiny_model):
    a, b = tiny_model("tiny-llama"), tiny_model("tiny-qwen2")
    with torch.inference_mode():
        plain = a(input_ids=_ids()).logits
        with instrument(a, RangeRecorder()), instrument(b, RangeRecorder()):
            traced = a(input_ids=_ids()).logits
    assert torch.equal(plain, traced)
