"""profile_prefill on tiny models: the rows add up, the repeats are what was asked, the API is usable."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from analyzers import breakdown
from analyzers.errors import InputError as UsageError
from profiler import profile_prefill
from profiler.sampling import Sampling


def test_rows_add_up_to_each_measured_ttft(tiny_model):
    seen = []
    run = profile_prefill(tiny_model("tiny-qwen3"), 128, warmup=1, repeat=3,
                          progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert seen == [("warmup", 1, 4), ("repeat", 2, 4), ("repeat", 3, 4), ("repeat", 4, 4)]
    assert len(run.ttft_ns) == 3 and run.repeat == 3 and run.warmup == 1
    for repeat, ttft in enumerate(run.ttft_ns):
        claimed = sum(r["ns"] for r in run.component_ns if r["repeat"] == repeat)
        assert 0 < claimed <= ttft  # other = ttft - claimed is never negative
    table = breakdown(run)
    p50 = sorted(run.ttft_ns)[1] / 1e6
    assert table["ms"].sum() == pytest.approx(p50, rel=1e-9)
    assert {"h2d", "sampling", "d2h", "attention", "mlp"} <= set(run.components_present)
    assert run.logits_kept == "last"


def test_batch_and_seq_len_are_recorded(tiny_model):
    run = profile_prefill(tiny_model("tiny-llama"), 32, batch=2, warmup=0, repeat=1)
    assert (run.seq_len, run.batch) == (32, 2)
    # with no warmup the cold prefill is the one measured repeat
    assert run.cold_ttft_ns == run.ttft_ns[0]


@pytest.mark.parametrize("kwargs,match", [
    ({"seq_len": 0}, "at least 1"),
    ({"repeat": 0}, "repeat 0"),
    ({"warmup": -1}, "negative"),
    ({"batch": 0}, "batch 0"),
])
def test_bad_arguments_are_refused(tiny_model, kwargs, match):
    args = {"seq_len": 16, **kwargs}
    with pytest.raises(UsageError, match=match):
        profile_prefill(tiny_model("tiny-llama"), **args)


class NoKeepWrapper(nn.Module):
    """A user's model whose forward has no logits_to_keep: lm_head runs on every position."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, input_ids, use_cache=True):
        return self.inner(input_ids=input_ids, use_cache=use_cache)


def test_full_sequence_lm_head_is_flagged(tiny_model):
    run = profile_prefill(NoKeepWrapper(tiny_model("tiny-llama")), 16, warmup=0, repeat=1)
    assert run.logits_kept == "all"


def test_sampling_rules():
    logits = torch.tensor([[0.0, 5.0, 4.9, -3.0]])
    assert Sampling().make("cpu")(logits).tolist() == [1]
    # top-p small enough keeps only the most likely token, whatever the seed
    assert all(Sampling(temperature=1.0, top_p=0.01, seed=s).make("cpu")(logits).tolist() == [1] for s in range(5))
    # the same seed draws the same token
    draws = [Sampling(temperature=5.0, seed=7).make("cpu")(logits).item() for _ in range(3)]
    assert len(set(draws)) == 1
    with pytest.raises(UsageError):
        Sampling(top_p=0)
    with pytest.raises(UsageError):
        Sampling(temperature=-1)


class RunsOutOfMemory(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, input_ids, use_cache=True, logits_to_keep=1):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_running_out_of_memory_is_a_memory_error_and_leaves_nothing_behind(tiny_model):
    import threading

    model = RunsOutOfMemory(tiny_model("tiny-llama"))
    with pytest.raises(MemoryError, match="out of memory"):
        profile_prefill(model, 16, warmup=0, repeat=1)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert not [t for t in threading.enumerate() if t.name == "ttft-telemetry"]
