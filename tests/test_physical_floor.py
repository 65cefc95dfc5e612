"""The two floors: per component (the model as written, unfused) and the whole prefill's physical limit.

The physical limit is max(useful FLOPs / peak, minimum bytes / bandwidth), minimum bytes = every
weight read once (the input embedding only for the rows it gathers) + the KV cache written once +
int64 token ids in and the sampled id out (docs/roofline.md, "Two floors"). Every figure below is
worked out from the model's published facts with the formulas written out here, not by calling
the FLOP model.
"""
from __future__ import annotations

import json

import pytest

from analyzers.cost.ceilings import Ceilings
from analyzers.cost.flops import minimum_bytes
from analyzers.cost.model_spec import ModelSpec
from analyzers.cost.predict import predict
from analyzers.cost.roofline import physical_floor
from tests.conftest import cli

H100_BF16, H100_BW = 989.4e12, 3.35e12  # the H100 SXM datasheet row: dense bf16 FLOP/s, HBM3 bytes/s

# Qwen3-8B: L=36, d=4096, H=32, K=8, h=128, I=12288, V=151936, untied embeddings, q/k RMSNorm per head
L, D, H, K, HD, INTER, V = 36, 4096, 32, 8, 128, 12288, 151936


def qwen3_8b_flops(n: int) -> int:
    """Useful FLOPs of one Qwen3-8B prefill of n tokens, batch 1 (multiply-add = 2)."""
    per_layer = (2 * n * D * (H + 2 * K) * HD  # q, k, v projections
                 + 4 * n * (H + K) * HD  # q/k RMSNorm, 4 ops an element
                 + 3 * n * (H + K) * HD  # RoPE on q and k, 3 ops an element
                 + 4 * HD * H * n * (n + 1) // 2  # QK^T and PV over the causal pairs
                 + 2 * n * H * HD * D  # o projection
                 + 6 * n * D * INTER  # gate, up, down
                 + 2 * 4 * n * D  # two RMSNorms
                 + 2 * n * D)  # two residual adds
    once = (n * HD // 2 + 4 * n * HD  # RoPE angles, cos, sin
            + 4 * n * D  # final norm
            + 2 * D * V  # lm_head, last position
            + V)  # greedy argmax
    return L * per_layer + once


def qwen3_8b_bytes(n: int) -> int:
    """Minimum bytes, bf16: weights once, KV cache once, ids in and out."""
    layer_params = D * (H + 2 * K) * HD + H * HD * D + 2 * HD + 3 * D * INTER + 2 * D  # qkv, o, q/k norms, mlp, 2 norms
    weights = 2 * (L * layer_params + V * D + n * D + D)  # layers, lm_head, the n embedding rows, final norm
    kv = 2 * L * K * HD * n * 2
    return weights + kv + 8 * n + 8


def test_qwen3_8b_flops_and_bytes_by_hand():
    assert qwen3_8b_flops(16384) == 306_815_397_155_200  # docs/roofline.md's worked example
    # 36 layers of 192,946,432 weights, lm_head 622,329,856, 16384 embedding rows, final norm: 7,635,514,368
    assert qwen3_8b_bytes(16384) == 2 * 7_635_514_368 + 2_415_919_104 + 131_080


@pytest.mark.parametrize("n, about_ms", [(16384, 310), (32768, 780)])
def test_predict_json_carries_both_floors(n, about_ms):
    out = cli("predict", "--model", "Qwen/Qwen3-8B", "--len", str(n), "--gpu", "h100-sxm", "--json")
    assert out.returncode == 0, out.stderr
    totals = json.loads(out.stdout)["totals"]
    flops, moved = qwen3_8b_flops(n), qwen3_8b_bytes(n)
    assert totals["physical_flops"] == flops and totals["physical_bytes"] == moved
    compute_ms, memory_ms = flops / H100_BF16 * 1e3, moved / H100_BW * 1e3
    assert totals["physical_floor_ms"] == pytest.approx(max(compute_ms, memory_ms), rel=1e-12)
    assert totals["physical_bound"] == "compute" and compute_ms > 50 * memory_ms
    assert totals["physical_floor_ms"] == pytest.approx(about_ms, rel=0.01)
    # the per-component floor is there too, and above: it charges norms, RoPE and residuals their own traffic
    assert totals["floor_ms"] > totals["physical_floor_ms"]


def test_predict_terminal_names_both_floors():
    out = cli("predict", "--model", "Qwen/Qwen3-8B", "--len", "16k", "--gpu", "h100-sxm")
    assert out.returncode == 0, out.stderr
    assert "floor TTFT" in out.stdout and "per component" in out.stdout
    assert "physical limit 310.10 ms" in out.stdout


def test_short_prompt_is_memory_bound_by_weights():
    # 1 token: about 2 FLOPs a weight against 2 bytes a weight, so the weights' bytes bound it
    ceilings = Ceilings("h100", {"bfloat16": H100_BF16}, H100_BW, "hand")
    from profiler.catalog import resolve

    _table, totals = predict(resolve("Qwen/Qwen3-8B").config, 1, ceilings, "bfloat16")
    assert totals["physical_bound"] == "memory"
    assert totals["physical_floor_ms"] == pytest.approx(qwen3_8b_bytes(1) / H100_BW * 1e3, rel=1e-12)


def test_physical_floor_is_the_larger_bound():
    toy = Ceilings("toy", {"float32": 100e9}, 10e9, "hand")
    # 1e9 FLOPs at 100 GFLOP/s = 10 ms; 2e8 bytes at 10 GB/s = 20 ms
    limit = physical_floor(1e9, 2e8, toy, "float32")
    assert (limit["compute_ms"], limit["memory_ms"], limit["floor_ms"], limit["bound"]) == \
        pytest.approx((10.0, 20.0, 20.0, "memory"))
    with pytest.raises(ValueError, match="no peak"):
        physical_floor(1.0, 1.0, toy, "bfloat16")


@pytest.mark.parametrize("name", ["Qwen/Qwen3-8B", "meta-llama/Meta-Llama-3-8B", "mistralai/Mistral-7B-v0.1",
                                  "google/gemma-2b", "tiny-qwen3", "tiny-gemma", "tiny-phi3"])
@pytest.mark.parametrize("n", [1, 100, 1000, 16384])
def test_physical_limit_never_above_the_per_component_floor(name, n):
    """sum of max(a_i, b_i) >= max(sum a_i, sum b_i) >= max(F / peak, minimum bytes / bw): the minimum bytes
    are a subset of the per-component bytes, so the physical limit can only be lower."""
    from profiler.catalog import resolve

    ceilings = Ceilings("h100", {"bfloat16": H100_BF16}, H100_BW, "hand")
    _table, totals = predict(resolve(name).config, n, ceilings, "bfloat16")
    assert 0 < totals["physical_floor_ms"] <= totals["floor_ms"]
    assert totals["physical_bytes"] <= totals["bytes"]


def test_sliding_layers_keep_only_their_window():
    # tiny-mistral: 4 layers, every one sliding with w = 1024; 2 kv heads of 64; fp16
    from profiler.catalog import resolve

    spec = ModelSpec.from_config(resolve("tiny-mistral").config)
    assert spec.sliding_window == 1024 and spec.kv_heads == 2 and spec.head_dim == 64 and spec.layers == 4
    assert minimum_bytes(spec, 4096, dtype_bytes=2).kv_cache == 2 * 4 * 2 * 64 * 1024 * 2
    assert minimum_bytes(spec, 512, dtype_bytes=2).kv_cache == 2 * 4 * 2 * 64 * 512 * 2


def test_moe_reads_only_the_experts_its_tokens_reach():
    config = {"model_type": "qwen2_moe", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
              "intermediate_size": 256, "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2,
              "shared_expert_intermediate_size": 128, "mlp_only_layers": [0], "vocab_size": 100,
              "tie_word_embeddings": True}
    spec = ModelSpec.from_config(config)
    # 2 tokens route 4 slots: at most 4 of the 8 experts. Attention (4 heads of 16, no biases in this
    # config): q,k,v 64·192, o 64·64; two norms 128.
    attention = 64 * 192 + 64 * 64
    moe = 4 * 3 * 64 * 32 + 64 * 8 + 3 * 64 * 128 + 64  # experts reached, router, shared expert, its gate
    weights = 4 * (attention + 128) + 3 * 256 * 64 + 3 * moe + 100 * 64 + 64  # tied: the one matrix, whole
    got = minimum_bytes(spec, 2, dtype_bytes=2)
    assert got.weights == 2 * weights
    assert got.kv_cache == 2 * 4 * 4 * 16 * 2 * 2 and got.tokens == 8 * 2 + 8


def test_a_run_shows_both_floors(tmp_path):
    """tiny-qwen3 with 2 of its 4 layers, float32 on the CPU, judged against the H100 datasheet."""
    folder = tmp_path / "run"
    out = cli("--model", "tiny-qwen3", "--layers", "2", "--len", "64", "--warmup", "0", "--repeat", "1",
              "--no-trace", "--gpu", "h100-sxm", "--out", str(folder))
    assert out.returncode == 0, out.stderr
    assert "TTFT floor" in out.stdout and "physical limit" in out.stdout
    data = json.loads(cli("analyze", str(folder), "--json").stdout)
    # tiny-qwen3: d=256, H=4, K=2, h=64, I=768, V=4096, untied, q/k norm per head; 2 layers built; n=64
    n, d, heads, kv, h, inter, vocab, layers = 64, 256, 4, 2, 64, 768, 4096, 2
    per_layer = (2 * n * d * (heads + 2 * kv) * h + 4 * n * (heads + kv) * h + 3 * n * (heads + kv) * h
                 + 4 * h * heads * n * (n + 1) // 2 + 2 * n * heads * h * d + 6 * n * d * inter + 8 * n * d + 2 * n * d)
    flops = layers * per_layer + n * h // 2 + 4 * n * h + 4 * n * d + 2 * d * vocab + vocab
    params = layers * (d * (heads + 2 * kv) * h + heads * h * d + 2 * h + 3 * d * inter + 2 * d) + vocab * d + n * d + d
    moved = 4 * params + 2 * layers * kv * h * n * 4 + 8 * n + 8  # float32: 4 bytes
    peak, bandwidth = data["ceilings"]["flops_per_s"]["float32"], data["ceilings"]["bytes_per_s"]
    limit = data["physical_floor"]
    assert (limit["flops"], limit["bytes"]) == (flops, moved)
    assert data["physical_floor_ms"] == pytest.approx(max(flops / peak, moved / bandwidth) * 1e3, rel=1e-12)
    assert data["physical_floor_ms"] <= data["ttft_floor_ms"]
