"""Chunked prefill (`--chunk C`): ceil(n/C) forwards through one KV cache, timed per chunk and in total.

The last position's logits equal the unchunked prefill's within float32's tolerance (torch.testing's
defaults: rtol 1.3e-6, atol 1e-5; measured on tiny-llama at n = 256, C = 64: about 4e-7), the
chunks' times add up to the TTFT of every repeat, and the cost model's extra bytes are worked out
by hand below.
"""
from __future__ import annotations

import json

import pytest
import torch

from analyzers.errors import InputError
from tests.conftest import cli

N, C = 256, 64


def _quick(**options):
    return {"warmup": 0, "repeat": 2, "telemetry_interval_ms": None, **options}


def test_chunked_logits_equal_unchunked_within_float32_tolerance(tiny_model):
    from profiler.measure import Timing, _prepare
    from profiler.recorders import NullRecorder

    model = tiny_model("tiny-llama")
    with torch.inference_mode():
        whole = _prepare(model, Timing(seq_len=N), NullRecorder())()[1]
        chunked_call = _prepare(model, Timing(seq_len=N, chunk=C), NullRecorder())
        chunked = chunked_call()[1]
    assert chunked_call.chunk == C and len(chunked_call.chunk_edges) == N // C - 1
    a, b = whole[0].logits[:, -1, :], chunked[0].logits[:, -1, :]
    assert a.dtype == torch.float32
    torch.testing.assert_close(b, a)  # float32 defaults: rtol 1.3e-6, atol 1e-5
    assert (a - b).abs().max().item() < 1e-5
    assert torch.equal(whole[1], chunked[1])  # the same first token


def test_chunk_times_add_up_to_the_ttft_and_round_trip(tiny_model, tmp_path):
    from analyzers.render.chunks import chunk_lines, chunks_json
    from analyzers.run import load_run
    from analyzers.store import save_run
    from profiler.measure import profile_prefill

    run = profile_prefill(tiny_model("tiny-llama"), N, **_quick(chunk=C))
    assert run.chunk == C and run.chunk_tokens == [C] * (N // C)
    assert len(run.chunk_ns) == len(run.ttft_ns) == 2
    for repeat, (times, ttft) in enumerate(zip(run.chunk_ns, run.ttft_ns, strict=True)):
        assert len(times) == N // C and all(t > 0 for t in times)
        assert sum(times) == ttft
        mine = [r for r in run.chunk_component_ns if r["repeat"] == repeat]
        whole = [r for r in run.component_ns if r["repeat"] == repeat]
        assert {r["chunk"] for r in mine} == set(range(N // C))
        assert sum(r["ns"] for r in mine) == sum(r["ns"] for r in whole)  # per-chunk rows split the whole
        assert {r["component"] for r in mine if r["chunk"] == 0} >= {"h2d", "attention", "mlp"}
        assert {"sampling", "d2h"} <= {r["component"] for r in mine if r["chunk"] == N // C - 1}
    save_run(run, tmp_path)
    back = load_run(tmp_path)
    assert (back.chunk, back.chunk_tokens, back.chunk_ns) == (run.chunk, run.chunk_tokens, run.chunk_ns)
    assert back.chunk_component_ns == run.chunk_component_ns
    summary = chunks_json(back)
    assert summary["count"] == N // C and summary["total_ms"] == pytest.approx(summary["ttft_ms"])
    lines = chunk_lines(back)
    assert len(lines) == N // C + 2 and lines[-1].lstrip().startswith("total:")


def test_old_runs_load_unchunked(tiny_model, tmp_path):
    from analyzers.render.chunks import chunk_lines, chunks_json
    from analyzers.run import load_run
    from analyzers.store import save_run
    from profiler.measure import profile_prefill

    save_run(profile_prefill(tiny_model("tiny-llama"), 32, **_quick(repeat=1)), tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    for name in ("chunk", "chunk_tokens", "chunk_ns", "chunk_component_ns"):
        data.pop(name)  # a run.json written before chunked prefill
    (tmp_path / "run.json").write_text(json.dumps(data))
    run = load_run(tmp_path)
    assert run.chunk is None and chunks_json(run) is None and chunk_lines(run) == []


@pytest.mark.parametrize("args", [("--chunk", "0"), ("--chunk", "-64")])
def test_chunk_below_one_is_one_sentence(args):
    result = cli("--model", "tiny-llama", "--len", "64", *args, "--no-trace")
    assert result.returncode == 2
    assert "--chunk" in result.stderr and "at least 1" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and result.stderr.strip().endswith(".")


def test_chunk_not_below_the_prompt_runs_unchunked_and_says_so(tiny_model, capsys):
    from profiler.measure import profile_prefill

    run = profile_prefill(tiny_model("tiny-llama"), 64, **_quick(chunk=128, repeat=1))
    assert run.chunk is None and run.chunk_ns == [] and run.chunk_tokens == []
    said = [n for n in run.notices if "unchunked" in n]
    assert len(said) == 1 and "chunk 128" in said[0]
    assert capsys.readouterr().err.count("ran unchunked") == 1


class _Output:
    def __init__(self, logits):
        self.logits = logits


class _NoCache(torch.nn.Module):
    """A causal LM whose forward takes no KV cache at all."""

    def __init__(self, vocab: int = 16):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 8)
        self.head = torch.nn.Linear(8, vocab)

    def forward(self, input_ids, use_cache=False, logits_to_keep=0):
        return _Output(self.head(self.embed(input_ids)))


class _IgnoresCache(_NoCache):
    """One that takes a cache and never extends it: each chunk would be scored alone."""

    def forward(self, input_ids, past_key_values=None, use_cache=False, logits_to_keep=0):
        return _Output(self.head(self.embed(input_ids)))


@pytest.mark.parametrize("model", [_NoCache, _IgnoresCache])
def test_a_model_whose_cache_cannot_grow_is_refused(model):
    from profiler.cli.errors import in_flags
    from profiler.measure import profile_prefill

    with pytest.raises(InputError) as caught:
        profile_prefill(model(), 32, vocab_size=16, **_quick(chunk=8))
    text = in_flags(caught.value)
    assert "cannot extend a KV cache" in text and "without --chunk" in text
    assert text.count(". ") == 0 and "\n" not in text
    # unchunked, the same model profiles as before
    assert profile_prefill(model(), 32, vocab_size=16, **_quick(repeat=1)).chunk is None


def test_chunk_sweep_writes_its_table_and_figure(tmp_path):
    out = tmp_path / "chunks"
    result = cli("sweep", "--model", "tiny-llama", "--len", "128", "--chunk", "32,64", "--warmup", "0",
                 "--repeat", "1", "--no-trace", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "chunk_sweep.png").stat().st_size > 1000
    lines = (out / "chunk_sweep.csv").read_text().splitlines()
    assert lines[0].startswith("chunk,chunks,ttft_ms") and len(lines) == 1 + 3  # reference + two chunk sizes
    assert lines[1].startswith(",1,")  # the unchunked reference first
    assert {p.name for p in out.iterdir()} >= {"unchunked", "c32", "c64"}
    summary = json.loads((out / "chunk_sweep.json").read_text())
    assert summary["chunks"] == [32, 64] and summary["rows"][0]["vs_unchunked_pct"] == 0
    again = cli("analyze", str(out))
    assert again.returncode == 0 and "unchunked" in again.stdout and "reference" in again.stdout
    as_json = json.loads(cli("analyze", str(out), "--json").stdout)
    assert [r["chunk"] for r in as_json["rows"]] == [None, 32, 64]
    two = cli("sweep", "--model", "tiny-llama", "--len", "64,128", "--chunk", "32", "--no-trace")
    assert two.returncode == 2 and "one prompt length" in two.stderr


def _predict(*extra):
    result = cli("predict", "--model", "tiny-llama", "--len", str(N), "--gpu", "h100-sxm", "--dtype", "bfloat16",
                 "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_predict_chunk_bytes_match_the_hand_formula():
    whole, chunked = _predict(), _predict("--chunk", str(C))
    # tiny-llama: d 256, H 4 heads, K 2 kv heads, h 64, I 768, V 4096, L 4, untied, no biases; bf16 e = 2
    d, heads, kv, h, inter, vocab, layers, e, b = 256, 4, 2, 64, 768, 4096, 4, 2, 1
    offsets = range(0, N, C)  # 0, 64, 128, 192
    forwards = len(offsets)
    # each chunk's attention re-reads the K and V cached before it: 2·K·h·b·e per cached token and layer
    reread_kv = layers * 2 * kv * h * b * e * sum(offsets)
    # each forward after the first reads every weight again: q/k/v, o, gated MLP, two norms a layer, the
    # final norm; and runs lm_head on its last position (weights, its input row, its logits)
    weights = e * (layers * (d * (heads + 2 * kv) * h + heads * h * d + 3 * d * inter + 2 * d) + d)
    lm_head = e * (vocab * d + b * d) + e * b * vocab
    extra = reread_kv + (forwards - 1) * (weights + lm_head)
    assert reread_kv == 786_432 and extra == 25_992_192
    assert chunked["totals"]["bytes"] - whole["totals"]["bytes"] == extra
    assert chunked["totals"]["flops"] == whole["totals"]["flops"]  # useful work is the same
    assert chunked["totals"]["chunk"] == C and chunked["totals"]["chunks"] == forwards
    rows = {r["component"]: r for r in chunked["components"]}
    before = {r["component"]: r for r in whole["components"]}
    assert rows["attention"]["bytes"] - before["attention"]["bytes"] == reread_kv
    # sdpa: the first chunk is causal (C(C+1)/2 pairs), later ones score their whole C x (o + C) mask
    pairs = C * (C + 1) // 2 + sum(C * (o + C) for o in offsets[1:])
    assert rows["attention"]["flops_executed"] == 4 * b * h * heads * layers * pairs


def test_predict_chunk_bad_input():
    zero = cli("predict", "--model", "tiny-llama", "--len", "256", "--gpu", "h100-sxm", "--chunk", "0")
    assert zero.returncode == 2 and "--chunk 0" in zero.stderr
    big = cli("predict", "--model", "tiny-llama", "--len", "256", "--gpu", "h100-sxm", "--chunk", "1k", "--json")
    assert big.returncode == 0 and "unchunked" in big.stderr
    assert "chunk" not in json.loads(big.stdout)["totals"]


def test_component_costs_chunk_not_below_n_is_unchunked():
    from analyzers.cost.flops import component_costs
    from analyzers.cost.model_spec import ModelSpec
    from profiler.catalog import resolve

    spec = ModelSpec.from_config(resolve("tiny-llama").config)
    assert component_costs(spec, N, chunk=N).equals(component_costs(spec, N))
    with pytest.raises(InputError):
        component_costs(spec, N, chunk=0)
