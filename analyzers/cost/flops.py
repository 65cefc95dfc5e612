"""The FLOP and byte model of one prefill, per component (docs/roofline.md has the maths).

Units and conventions, chosen to agree with `torch.utils.flop_counter`:
- FLOPs count a multiply-add as 2. A linear layer is its matmul, 2·b·n·in·out,
  exactly; its bias add (b·n·out) is not counted, as FlopCounterMode counts
  `addmm` as the matmul alone. Elementwise work (norms, RoPE, residual adds,
  argmax) is counted at 1 FLOP per arithmetic op per element, transcendental
  included. Not counted: the gated MLP's activation and act·up product
  (under 0.1% of its matmuls at d = 4096), attention's softmax and mask
  (~5 ops a score against 4·h matmul FLOPs a pair: ~1% at h = 128).
- `flops` is the useful work: what an ideal kernel must do (causal pairs only,
  logits for the last position only). `flops_executed` is what the chosen
  implementation does (eager attention scores every pair; `logits="all"`
  runs lm_head on every position).
- `bytes` is a floor: each weight read once, each component's activations read
  once and written once, nothing materialised in between (no attention scores,
  no MLP intermediates). Real kernels move more; none can move less.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from analyzers.cost.model_spec import ModelSpec
from analyzers.errors import InputError

Logits = Literal["last", "all"]

COST_COMPONENTS: tuple[str, ...] = (
    "embedding", "rope", "norm", "qkv_proj", "qk_norm", "attention",
    "o_proj", "mlp", "residual", "lm_head", "sampling",
)
COLUMNS = ("component", "flops", "flops_executed", "bytes", "calls")
# Attention implementations `executed_pairs` knows how to count.
ATTENTION_KINDS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flash_attention_4", "flex_attention")

NORM_FLOPS_PER_ELEMENT = 4  # RMSNorm: square, sum, scale by rsqrt, scale by weight
LAYERNORM_FLOPS_PER_ELEMENT = 7  # LayerNorm: RMSNorm's four plus the mean's sum, the subtraction, the bias add
ROPE_FLOPS_PER_ELEMENT = 3  # x·cos + rotate_half(x)·sin
TOKEN_ID_BYTES = 8  # int64 ids in, int64 token out


@dataclass(frozen=True)
class Cost:
    flops: int = 0
    executed: int = 0
    bytes: int = 0
    calls: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.executed + other.executed,
                    self.bytes + other.bytes, self.calls + other.calls)


def _work(flops: int, bytes_: int, calls: int, executed: int | None = None) -> Cost:
    return Cost(flops, flops if executed is None else executed, bytes_, calls)


def attention_pairs(seq_len: int, window: int | None = None) -> int:
    """Query-key pairs a causal prefill must score: sum over queries i of min(i + 1, window)."""
    n = seq_len
    if window is None or window >= n:
        return n * (n + 1) // 2
    # The first `window` queries see a growing prefix; every later one sees exactly `window` keys.
    return window * (window + 1) // 2 + (n - window) * window


def executed_pairs(seq_len: int, window: int | None, attn: str) -> int:
    """Pairs the attention implementation actually scores (see docs/roofline.md).

    - eager materialises the full [n, n] score matrix and masks it afterwards;
    - sdpa gets `is_causal=True` from transformers when no window bites, and its
      kernels then skip blocks above the diagonal; once a window bites (n >= w)
      transformers passes an explicit mask, and masked kernels score every block;
    - flash_attention_*, flex_attention and hub kernels skip fully masked blocks,
      causal and windowed alike. The half-filled diagonal blocks they still
      compute (about n·tile/2 pairs, < 1% at n = 16k) are not counted.
    """
    kind = attn.split("|")[-1]  # "paged|sdpa" runs the sdpa kernel
    if kind == "eager":
        return seq_len * seq_len
    if kind == "sdpa" and window is not None and seq_len >= window:
        return seq_len * seq_len
    return attention_pairs(seq_len, window)


def attention_params(spec: ModelSpec) -> int:
    """Weights of one attention block: projections, their biases, q/k norms."""
    d, h, heads, kv = spec.hidden, spec.head_dim, spec.heads, spec.kv_heads
    qkv = d * (heads + 2 * kv) * h + (heads + 2 * kv) * h * spec.qkv_bias
    o = heads * h * d + d * spec.o_bias
    return qkv + o + _qk_norm_params(spec)


def _qk_norm_params(spec: ModelSpec) -> int:
    if not spec.qk_norm:
        return 0
    return 2 * spec.head_dim if spec.qk_norm_per_head else (spec.heads + spec.kv_heads) * spec.head_dim


def _dense_mlp_params(d: int, width: int, bias: bool = False, gated: bool = True) -> int:
    if not gated:
        return 2 * d * width + (width + d) * bias  # fc1 [d -> I], fc2 [I -> d]
    return 3 * d * width + (2 * width + d) * bias  # gate, up [d -> I], down [I -> d]


def _norm_params(spec: ModelSpec) -> int:
    return spec.hidden * (2 if spec.norm_bias else 1)


def _rotary_dim(spec: ModelSpec) -> int:
    return spec.head_dim if spec.rotary_dim is None else spec.rotary_dim


def _vocab_params(spec: ModelSpec) -> int:
    """Input embedding, an untied lm_head (and its bias), a learned position table."""
    matrices = spec.vocab * spec.hidden * (1 if spec.tied_embeddings else 2)
    return matrices + spec.vocab * spec.lm_head_bias + spec.learned_positions * spec.hidden


def mlp_params(spec: ModelSpec, layer: int, experts: int | None = None) -> int:
    """Weights of layer `layer`'s MLP; for MoE, `experts` of its routed experts (default all)."""
    d = spec.hidden
    if not spec.is_moe(layer):
        return _dense_mlp_params(d, spec.intermediate, spec.mlp_bias, spec.gated_mlp)
    routed = spec.num_experts if experts is None else experts
    shared = _dense_mlp_params(d, spec.shared_expert_intermediate) if spec.shared_expert_intermediate else 0
    return routed * 3 * d * spec.expert_intermediate + d * spec.num_experts + shared + d * spec.shared_expert_gate


def _layer_params(spec: ModelSpec, layer: int, experts: int | None = None) -> int:
    return attention_params(spec) + mlp_params(spec, layer, experts) + spec.norms_per_layer * _norm_params(spec)


def total_params(spec: ModelSpec) -> int:
    """Every weight, tied embeddings counted once (what `sum(p.numel())` gives)."""
    layers = sum(_layer_params(spec, i) for i in range(spec.layers))
    return _vocab_params(spec) + layers + _norm_params(spec)  # + final norm


def non_embedding_params(spec: ModelSpec) -> int:
    """`total_params` less the vocabulary matrices (input embedding, an untied lm_head, a position table)."""
    return total_params(spec) - _vocab_params(spec)


def active_params(spec: ModelSpec) -> int:
    """Weights one token touches: MoE layers count only their top-k routed experts."""
    layers = sum(_layer_params(spec, i, spec.experts_per_token) for i in range(spec.layers))
    return _vocab_params(spec) + layers + _norm_params(spec)


def kv_cache_bytes(spec: ModelSpec, seq_len: int, batch: int = 1, dtype_bytes: int = 2,
                   layers: int | None = None) -> int:
    """The K and V a prefill leaves in the cache: 2·L·K·h·b·n·e."""
    count = spec.layers if layers is None else layers
    return 2 * count * spec.kv_heads * spec.head_dim * batch * seq_len * dtype_bytes


def component_costs(spec: ModelSpec, seq_len: int, batch: int = 1, dtype_bytes: int = 2, attn: str = "sdpa",
                    logits: Logits = "last", layers: int | None = None, **sizes: int | None) -> pd.DataFrame:
    """One row per component: `component, flops, flops_executed, bytes, calls` for one prefill.

    `layers` gives the cost of the first K layers (a run built with `--layers K`). `sizes` are
    `logits_bytes`, the logits' element size (default `dtype_bytes`, as lm_head returns them; 4 for
    float32 logits), and `chunk`, the tokens per forward of a chunked prefill (default None: one forward).
    `calls` is the number of ranges the profiler records per prefill, sampling included.
    With `chunk` C (a chunked prefill: ceil(n/C) forwards through the KV cache) every forward is costed
    on its own and summed: useful FLOPs are unchanged, but each forward reads the weights again, each
    chunk's attention reads the K and V cached before it, and each forward runs lm_head on its last
    position (`chunk_spans`, `chunk_attention`).
    """
    unknown = sorted(set(sizes) - {"logits_bytes", "chunk"})
    if unknown:
        raise TypeError(f"component_costs() got unknown option {unknown[0]!r}; the options are logits_bytes and chunk.")
    chunk, logits_bytes = sizes.get("chunk"), sizes.get("logits_bytes")
    count = _checked_layers(spec, seq_len, batch, dtype_bytes, logits, layers)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise InputError(f"chunk {chunk!r} is not a positive number of tokens; pass the tokens per chunk, or None.")
    spans = chunk_spans(seq_len, chunk)
    costs = {c: Cost() for c in COST_COMPONENTS}
    for offset, size in spans:
        _add_forward(costs, spec, count, batch, offset, size, dtype_bytes, attn)
    costs["lm_head"], costs["sampling"] = _head(spec, seq_len, batch, dtype_bytes, logits_bytes or dtype_bytes,
                                                logits, len(spans))
    rows = [(c, cost.flops, cost.executed, cost.bytes, cost.calls) for c, cost in costs.items()]
    # Exact integers where they fit; beyond 2**63 (eager attention at millions of tokens) floats.
    exact = max(max(r[1], r[2], r[3]) for r in rows) < 2**63
    kind = "int64" if exact else "float64"
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(
        {"flops": kind, "flops_executed": kind, "bytes": kind, "calls": "int64"})


def chunk_spans(seq_len: int, chunk: int | None) -> list[tuple[int, int]]:
    """(offset, tokens) of each forward of a prefill: one span unchunked, else C tokens each, the rest last."""
    if chunk is None or chunk >= seq_len:
        return [(0, seq_len)]
    return [(start, min(chunk, seq_len - start)) for start in range(0, seq_len, chunk)]


def chunk_attention(offset: int, size: int, window: int | None, attn: str) -> tuple[int, int, int]:
    """(useful pairs, executed pairs, keys read) of one chunk's attention: `size` queries at positions
    offset.. that attend to the `offset` cached positions (the last `window` of them) and to each other.

    Useful pairs sum over the chunks to the unchunked `attention_pairs`. With a cache, eager and sdpa
    get an explicit [size, keys] mask and score every block of it; the first chunk (no cache) is the
    unchunked case (`executed_pairs`); flash and flex kernels skip masked blocks, so run the useful pairs.
    """
    cached = offset if window is None else min(offset, window)
    useful = attention_pairs(offset + size, window) - attention_pairs(offset, window)
    if offset == 0:
        return useful, executed_pairs(size, window, attn), size
    kind = attn.split("|")[-1]
    executed = size * (cached + size) if kind in ("eager", "sdpa") else useful
    return useful, executed, cached + size


def _add_forward(costs: dict, spec: ModelSpec, count: int, b: int, offset: int, n: int, e: int, attn: str) -> None:
    """Add one forward of n tokens at position `offset` (after `offset` cached ones) to `costs`, lm_head aside."""
    tokens = b * n
    d, h, heads, kv = spec.hidden, spec.head_dim, spec.heads, spec.kv_heads
    qk_width = (heads + kv) * h  # the q and k features q/k norms touch, per token
    rot = _rotary_dim(spec)  # of each head's h features, those RoPE rotates (0: no RoPE)
    for name, cost in zip(("embedding", "rope", "norm"), _outside_layers(spec, tokens, e), strict=True):
        costs[name] += cost
    costs["attention"] += _work(0, 0, len(set(spec.layer_types[:count])))  # one mask per attention type in use
    qkv_out = (heads + 2 * kv) * h
    for layer in range(count):
        # q, k, v: [b, n, d] -> [b, n, (H + 2K)·h]. The k and v written here are the KV cache
        # (2·K·h·b·n·e a layer): the floor charges the cache write to qkv_proj, once.
        costs["qkv_proj"] += _work(2 * tokens * d * qkv_out,
                                   e * (d * qkv_out + qkv_out * spec.qkv_bias + tokens * (d + qkv_out)),
                                   1 if spec.fused_qkv else 3)
        if spec.qk_norm:
            costs["qk_norm"] += _work(NORM_FLOPS_PER_ELEMENT * tokens * qk_width,
                                      e * (2 * tokens * qk_width + _qk_norm_params(spec)), 2)
        # apply_rotary_pos_emb: reads q, k, cos, sin; writes q, k.
        costs["rope"] += _work(ROPE_FLOPS_PER_ELEMENT * tokens * (heads + kv) * rot,
                               e * (2 * tokens * (heads + kv) * rot + 2 * tokens * rot), 1 if rot else 0)
        # QK^T and PV: 2·h FLOPs each per (query head, pair). GQA shares K/V between heads, so it cuts
        # bytes, not FLOPs. Q in and O out for the chunk's tokens; K and V of every key it reads
        # (unchunked: its own tokens; a later chunk re-reads the cached ones too).
        useful, executed, keys = chunk_attention(offset, n, spec.window(layer), attn)
        per_pair = 4 * b * h * heads
        costs["attention"] += _work(per_pair * useful, e * b * h * (2 * heads * n + 2 * kv * keys), 1,
                                    executed=per_pair * executed)
        costs["o_proj"] += _work(2 * tokens * heads * h * d,
                                 e * (heads * h * d + d * spec.o_bias + tokens * (heads * h + d)), 1)
        costs["mlp"] += _mlp(spec, layer, tokens, e)
        for _ in range(spec.norms_per_layer):  # one where a parallel block shares its input norm
            costs["norm"] += _norm(spec, tokens, e)
        # Two residual adds: each reads two [b, n, d] tensors and writes one. A parallel block
        # (x + attn + mlp) adds three tensors, which is two adds too.
        costs["residual"] += _work(2 * tokens * d, e * 2 * 3 * tokens * d, 1)


def _outside_layers(spec: ModelSpec, tokens: int, e: int) -> tuple[Cost, Cost, Cost]:
    """Once per forward: embedding rows in and [b, n, d] out; cos/sin (positions x inverse
    frequencies, rot/2 per token, then cos, sin and their scaling); the final norm, applied to
    every position (lm_head slices after it). A learned position table (GPT-2, OPT) adds its
    b·n rows to the token rows: one more read, one add."""
    d, rot = spec.hidden, _rotary_dim(spec)
    pos = tokens * d * bool(spec.learned_positions)
    embedding = _work(pos, e * (2 * tokens * d + pos) + TOKEN_ID_BYTES * tokens, 1)
    rope = _work(tokens * rot // 2 + 4 * tokens * rot, e * 2 * tokens * rot, 1 if rot else 0)
    return embedding, rope, _norm(spec, tokens, e)


def _checked_layers(spec: ModelSpec, seq_len: int, batch: int, dtype_bytes: int, logits: str,
                    layers: int | None) -> int:
    """The layer count to cost, once every argument is known to make sense."""
    count = spec.layers if layers is None else layers
    if not 1 <= count <= spec.layers:
        raise InputError(f"layers {layers} is outside 1..{spec.layers} for this model; pick a value in that range.")
    if seq_len < 1 or batch < 1 or dtype_bytes < 1:
        raise InputError(f"seq_len {seq_len}, batch {batch} and dtype_bytes {dtype_bytes} must all be at least 1.")
    if logits not in ("last", "all"):
        raise InputError(f"logits {logits!r} is neither 'last' nor 'all'.")
    return count


def _head(spec: ModelSpec, n: int, b: int, e: int, lb: int, logits: str, forwards: int = 1) -> tuple[Cost, Cost]:
    """lm_head (only the last position's logits are needed for the first token) and greedy argmax
    (one compare per logit of the last position). A chunked prefill's every forward runs lm_head on its
    last position (`logits="all"`: on all its positions, n in all): its weights are read once a forward."""
    d = spec.hidden
    kept = forwards if logits == "last" else n
    lm_head = _work(2 * b * d * spec.vocab,
                    forwards * e * (spec.vocab * (d + spec.lm_head_bias) + b * d) + forwards * lb * b * spec.vocab,
                    forwards, executed=2 * b * kept * d * spec.vocab)
    return lm_head, _work(b * spec.vocab, lb * b * spec.vocab + TOKEN_ID_BYTES * b, 1)


def _norm(spec: ModelSpec, tokens: int, e: int) -> Cost:
    per_element = LAYERNORM_FLOPS_PER_ELEMENT if spec.norm_bias else NORM_FLOPS_PER_ELEMENT
    d = spec.hidden
    return _work(per_element * tokens * d, e * (2 * tokens * d + _norm_params(spec)), 1)


def _mlp(spec: ModelSpec, layer: int, tokens: int, e: int) -> Cost:
    d = spec.hidden
    activations = e * 2 * tokens * d  # [b, n, d] in and out; the [b, n, I] intermediates stay on chip
    if not spec.is_moe(layer):
        matrices = 3 if spec.gated_mlp else 2
        return _work(2 * matrices * tokens * d * spec.intermediate, e * mlp_params(spec, layer) + activations, 1)
    # Each token runs its top-k experts (gate, up, down) plus the router, and the shared
    # expert with its gate where there is one.
    per_token = (spec.experts_per_token * 6 * d * spec.expert_intermediate + 2 * d * spec.num_experts
                 + 6 * d * spec.shared_expert_intermediate + 2 * d * spec.shared_expert_gate)
    # Weights: the experts the b·n·k routing slots can reach, at most all of them.
    touched = min(spec.num_experts, tokens * spec.experts_per_token)
    return _work(per_token * tokens, e * mlp_params(spec, layer, touched) + activations, 1)


@dataclass(frozen=True)
class MinimumBytes:
    """What no prefill can avoid moving through memory, however fused (docs/roofline.md)."""

    weights: int  # every weight the prefill uses, read once
    kv_cache: int  # the K and V a later decode needs, written once
    tokens: int  # the prompt's ids in, the sampled token out

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.tokens


def minimum_bytes(spec: ModelSpec, seq_len: int, batch: int = 1, dtype_bytes: int = 2,
                  layers: int | None = None) -> MinimumBytes:
    """The bytes behind the physical floor: each weight read once, the KV cache written once, ids in and out.

    Unlike `component_costs`' bytes, nothing passes between components: a fully fused prefill
    keeps every activation on chip, so the per-component floor's norm, RoPE and residual traffic
    is not here. The input embedding contributes only the b·n rows it gathers (at most V; a
    prompt that repeats tokens gathers fewer); a tied matrix is read once, whole, by lm_head.
    Sliding-window layers keep only their last w positions. The last position's logits are not
    counted: sampling runs on the device, so only the token must leave it.
    """
    count = _checked_layers(spec, seq_len, batch, dtype_bytes, "last", layers)
    d, tokens = spec.hidden, batch * seq_len
    vocab_matrix = spec.vocab * d  # lm_head's weights, or the one tied matrix
    rows = 0 if spec.tied_embeddings else min(tokens, spec.vocab) * d
    touched = min(spec.num_experts, tokens * spec.experts_per_token)  # 0 for a dense model; unused there
    rows += min(seq_len, spec.learned_positions) * d  # the position rows the prompt gathers
    params = vocab_matrix + rows + _norm_params(spec) + spec.vocab * spec.lm_head_bias + sum(_layer_params(spec, i, touched) for i in range(count))  # + final norm
    kept = sum(min(seq_len, spec.window(i) or seq_len) for i in range(count))  # positions cached, summed over layers
    kv = 2 * spec.kv_heads * spec.head_dim * batch * kept * dtype_bytes
    return MinimumBytes(weights=dtype_bytes * params, kv_cache=kv,
                        tokens=TOKEN_ID_BYTES * tokens + TOKEN_ID_BYTES * batch)
