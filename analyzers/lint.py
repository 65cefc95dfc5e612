"""Prefill lint: configuration mistakes a run shows, each with its evidence and the ms at stake.

"What should I fix first?" is usually a setting, not a kernel: logits over every position,
SDPA falling back to its math kernel, fp32 upcasts, host syncs inside the forward, padding.
Each rule reads the run (its tables, and its trace's facts when there is one) and returns at
most one Finding; `lint` ranks them by the milliseconds they cost, largest first, so the first
is the answer. The ms are bounds a fix can win back at most, None where the run cannot tell.
Computed once, in `analyzers.tables.compute_tables`, and carried on `RunTables.findings` to the
terminal (top 3), `--json` and the report. The thresholds below are named with their reason:
a rule that fires on a clean run is a wrong rule.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Callable

from analyzers.cost.ceilings import Ceilings
from analyzers.lint_trace import FLOAT_BYTES, SDPA_MATH, TraceFacts, trace_facts

# Eager attention writes the b·H·n·n scores to memory and reads them back (softmax, then PV). From
# n = 2048 one head's fp32 scores are 16 MiB, past a GPU's L2 and a CPU's last-level cache, so they
# round-trip DRAM in every layer, which fused kernels (flash, memory-efficient) never do.
EAGER_MIN_SEQ_LEN = 2048
# Components whose dtype conversions count as upcasts in norms or softmax.
UPCAST_COMPONENTS = ("norm", "qk_norm", "attention")
# A conversion counts when it converts at least one value per token: an activation, not a scalar or a
# cos/sin table (a clean run converts a few 0-d constants, which move nothing).
UPCAST_MIN_ELEMENTS_PER_TOKEN = 1
# Below 5% of positions padded is what bucketed batching leaves anyway: not worth a finding.
PADDING_MIN_SHARE = 0.05
# Components a float32 matmul runs in (TF32 applies to them).
MATMUL_COMPONENTS = ("qkv_proj", "o_proj", "mlp", "lm_head")
# Far below its peers: under a quarter of the median efficiency of the other components with a
# floor (a factor the usual spread between well-written components stays inside), and only where
# its headroom is material, over 5% of the TTFT; with at least 3 peers, so the median means something.
PEER_EFFICIENCY_FRACTION = 0.25
PEER_MIN_HEADROOM_SHARE = 0.05
PEER_MIN_COUNT = 3
# A component whose floor is under 20 µs a call is timed as dispatch and launch overhead (5-20 µs an op
# in eager PyTorch), so its efficiency measures the overhead, not its kernel: it is no one's peer.
PEER_MIN_FLOOR_MS_PER_CALL = 0.02
# A finding that explains a component's slowness: the peer rule does not name that component again.
EXPLAINS = {"all-position-logits": "lm_head", "sdpa-math-fallback": "attention",
            "eager-attention-long-prompt": "attention", "fp32-upcast": "norm"}


@dataclass(frozen=True)
class Finding:
    key: str  # stable id, e.g. "all-position-logits"
    title: str  # one line a user reads first
    evidence: str  # what in the run shows it (numbers, names)
    ms: float | None  # TTFT the fix would win back at most (None when the run cannot tell)
    fix: str  # what to change

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    """What every rule reads: the run, its tables (None when linted alone), its trace's facts, the findings so far."""

    run: object
    tables: object | None
    trace: TraceFacts | None
    found: list[Finding] = field(default_factory=list)

    def component_ms(self, component: str) -> float | None:
        if self.tables is None:
            return None
        rows = self.tables.breakdown.set_index("component")["ms"]
        return float(rows[component]) if component in rows else None

    def headroom_ms(self, component: str) -> float | None:
        """Measured minus floor, from the roofline: what the component could still win at most."""
        roof = getattr(self.tables, "roofline", None)
        if roof is None:
            return None
        rows = roof.set_index("component")["headroom_ms"]
        value = float(rows[component]) if component in rows else math.nan
        return max(value, 0.0) if math.isfinite(value) else None

    def ttft_ms(self) -> float:
        if self.tables is not None:
            return float(self.tables.stats["p50_ms"])
        return float(statistics.median_low(self.run.ttft_ns)) / 1e6


Rule = Callable[[Context], "Finding | None"]


def lint(run, tables=None) -> list[Finding]:
    """Every finding of this run, the costliest first (unknown cost last); the trace is read once, here."""
    ctx = Context(run, tables, trace_facts(run))
    for rule in RULES:
        finding = rule(ctx)
        if finding is not None:
            ctx.found.append(finding)
    return sorted(ctx.found, key=lambda f: (f.ms is None, -(f.ms or 0.0)))


def all_position_logits(ctx: Context) -> Finding | None:
    run = ctx.run
    if run.logits_kept != "all":
        return None
    head = ctx.component_ms("lm_head")
    ms = None if head is None else head * (1 - 1 / run.seq_len)
    spent = "" if head is None else f"; lm_head took {head:.3g} ms, of which the last position needs 1/{run.seq_len}"
    return Finding("all-position-logits", "lm_head computes logits for every position, not only the last",
                   f"run.json logits_kept = 'all' at n={run.seq_len}{spent}", ms,
                   "pass logits_to_keep=1 (or slice the last hidden state before lm_head), as serving engines do")


def sdpa_math_fallback(ctx: Context) -> Finding | None:
    facts = ctx.trace
    if facts is None:
        return None
    math_calls = sum(n for name, n in facts.sdpa.items() if name.startswith(SDPA_MATH))
    if not math_calls:
        return None
    total = sum(facts.sdpa.values())
    fused = ", ".join(f"{name} x{n}" for name, n in facts.sdpa.items() if not name.startswith(SDPA_MATH))
    headroom = ctx.headroom_ms("attention")
    why = _math_causes(ctx.run, facts)
    return Finding("sdpa-math-fallback", "SDPA fell back to its math kernel: attention runs unfused",
                   f"trace: aten::_scaled_dot_product_attention_math x{math_calls} of {total} SDPA calls "
                   f"(fused: {fused or 'none'}){'; ' + why if why else ''}",
                   None if headroom is None else headroom * math_calls / total,
                   _math_fallback_fix(ctx.run))


def _math_causes(run, facts: TraceFacts) -> str:
    causes = []
    if run.dtype == "float32" and run.device.startswith("cuda"):
        causes.append("float32 on a GPU (no flash kernel)")
    if facts.sdpa_masked:
        causes.append(f"{facts.sdpa_masked} calls passed an explicit attn_mask")
    heads, kv = run.config.get("num_attention_heads"), run.config.get("num_key_value_heads")
    if heads and kv and kv < heads:
        causes.append(f"GQA ({heads} query heads over {kv} KV heads)")
    return ", ".join(causes)


def eager_attention_long_prompt(ctx: Context) -> Finding | None:
    run = ctx.run
    if run.attn.split("|")[-1] != "eager" or run.seq_len < EAGER_MIN_SEQ_LEN:
        return None
    heads = int(run.config.get("num_attention_heads") or 0) // max(run.tp, 1)
    layers = run.layers_built or int(run.config.get("num_hidden_layers") or 0)
    per_layer = run.batch * heads * run.seq_len ** 2 * 4  # float32: transformers' eager softmax runs in it
    scores = (f"b·H·n² = {run.batch}·{heads}·{run.seq_len}² scores per layer, {per_layer / 2**20:,.0f} MiB in "
              f"float32 ({per_layer * layers / 2**30:,.2f} GiB over {layers} layers)" if heads else "n² scores per layer")
    spent = ctx.component_ms("attention")
    return Finding("eager-attention-long-prompt",
                   f"eager attention at n={run.seq_len} materialises the full score matrix",
                   f"attn = 'eager', n = {run.seq_len} >= {EAGER_MIN_SEQ_LEN}: {scores} written and read back"
                   + ("" if spent is None else f"; attention took {spent:.3g} ms"),
                   ctx.headroom_ms("attention"),
                   "load the model with attn_implementation='sdpa' (or flash_attention_2), which never "
                   "materialises the scores")


def fp32_upcast(ctx: Context) -> Finding | None:
    facts, run = ctx.trace, ctx.run
    if facts is None:
        return None
    tokens = run.batch * run.seq_len
    ops = [op for op in facts.conversions if op.component in UPCAST_COMPONENTS
           and op.numel >= UPCAST_MIN_ELEMENTS_PER_TOKEN * tokens]
    ups = [op for op in ops if FLOAT_BYTES[op.dst] > FLOAT_BYTES[op.src]]
    if not ups:
        return None
    moved = sum(op.numel * (FLOAT_BYTES[op.src] + FLOAT_BYTES[op.dst]) for op in ops)
    model_bytes = FLOAT_BYTES.get(run.dtype, 2)
    at_model = sum(op.numel * model_bytes for op in ops)
    kinds = sorted({f"{op.src}->{op.dst}" for op in ops})
    places = sorted({op.component for op in ops})
    return Finding("fp32-upcast", f"dtype upcasts inside {' and '.join(places)} move activations through memory",
                   f"trace: {len(ops)} conversions ({', '.join(kinds)}; {len(ups)} upcasts) of activation-sized "
                   f"tensors in {', '.join(places)}, moving {moved / 2**20:.3g} MiB read+written, "
                   f"{moved / at_model:.1f}x the {at_model / 2**20:.3g} MiB those tensors hold in {run.dtype}",
                   sum(op.ms for op in ops),
                   "use a fused RMSNorm/softmax kernel that accumulates in float32 in registers (torch.compile, "
                   "a fused norm from your serving engine) instead of converting whole tensors")


def host_sync_in_forward(ctx: Context) -> Finding | None:
    facts, run = ctx.trace, ctx.run
    if facts is None:
        return None
    on_gpu = run.device.startswith("cuda")
    syncs = [op for op in facts.syncs if on_gpu or op.name != "aten::nonzero"]
    if not syncs:
        return None
    counts: dict[tuple[str, str], list] = {}  # (op, component) -> [calls, the first range it was seen in]
    for op in syncs:
        counts.setdefault((op.name, op.component), [0, op.where])[0] += 1
    shown = ", ".join(f"{name} x{n} in {comp} (first in {where})"
                      for (name, comp), (n, where) in sorted(counts.items(), key=lambda kv: -kv[1][0]))
    return Finding("host-sync-in-forward", f"{len(syncs)} host-device sync(s) inside the forward",
                   f"trace: {shown}" + (" (each drains the GPU's queue; the host time spent in them is mostly "
                                        "queued forward work, so what removing them wins is the device idle "
                                        "after each, not measured here)" if on_gpu
                                        else " (on a CPU cheap; on a GPU each drains the queue)"),
                   None if on_gpu else sum(op.ms for op in syncs),
                   "keep values on the device: no .item(), bool(tensor), .tolist() or data-dependent shapes "
                   "(nonzero, masked indexing) inside the forward")


def _math_fallback_fix(run) -> str:
    """What gets SDPA back onto a fused kernel on this run's device."""
    if run.device.startswith("cuda"):
        return ("run in bfloat16/float16 (flash attention needs 16-bit), drop the explicit attention mask where "
                "is_causal will do, and check torch.backends.cuda SDP switches and head_dim (<= 256)")
    return ("drop the explicit attention mask where is_causal will do (the CPU's fused flash kernel takes no "
            "arbitrary mask), or compare with attn_implementation='eager'")


def padding_waste(ctx: Context) -> Finding | None:
    padding = getattr(ctx.run, "padding", None) or {}
    pad, tokens = padding.get("pad_tokens", 0), padding.get("tokens", 0)
    if not tokens or pad / tokens < PADDING_MIN_SHARE:
        return None
    share = pad / tokens
    return Finding("padding-waste", f"{share:.0%} of the batch's positions are padding",
                   f"run.json padding: {pad} of {tokens} positions (batch {ctx.run.batch} x n {ctx.run.seq_len}) "
                   "are pad tokens, computed like real ones", ctx.ttft_ms() * share,
                   "batch prompts of similar length (bucketing), or run them unpadded (varlen / packed sequences)"
                   if ctx.run.batch > 1 else "pass the prompt unpadded: a single prompt needs no padding or mask")


def tf32_off(ctx: Context) -> Finding | None:
    run = ctx.run
    mode = (run.precision or {}).get("float32_matmul")
    if not run.device.startswith("cuda") or run.dtype != "float32" or mode != "ieee":
        return None
    spent = [ctx.component_ms(c) for c in MATMUL_COMPONENTS]
    matmul_ms = sum(ms for ms in spent if ms is not None) if ctx.tables is not None else None
    ms, peaks = None, ""
    if run.ceilings and matmul_ms is not None:
        ceilings = Ceilings.from_dict(run.ceilings)
        fp32, tf32 = ceilings.peak_flops("float32"), ceilings.peak_flops("tf32")
        if fp32 and tf32 and tf32 > fp32:
            ms, peaks = matmul_ms * (1 - fp32 / tf32), f"; peaks fp32 {fp32 / 1e12:.3g}, TF32 {tf32 / 1e12:.3g} TFLOP/s"
    took = "" if matmul_ms is None else f"; matmuls ({', '.join(MATMUL_COMPONENTS)}) took {matmul_ms:.3g} ms"
    return Finding("tf32-off", "float32 matmuls run in IEEE fp32 on the GPU's CUDA cores, not TF32 tensor cores",
                   f"run.json precision: float32_matmul_precision '{run.precision.get('float32_matmul_precision')}', "
                   f"allow_tf32 {run.precision.get('cuda_matmul_allow_tf32')}{took}{peaks}", ms,
                   "torch.set_float32_matmul_precision('high') (TF32), or run in bfloat16")


def below_peers(ctx: Context) -> Finding | None:
    rows = _peer_rows(ctx)
    if len(rows) < PEER_MIN_COUNT + 1:
        return None
    explained = {EXPLAINS[f.key] for f in ctx.found if f.key in EXPLAINS}
    ttft, worst = ctx.ttft_ms(), None
    for comp, (eff, head) in rows.items():
        peers = statistics.median(v for c, (v, _h) in rows.items() if c != comp)
        low = eff < PEER_EFFICIENCY_FRACTION * peers and head > PEER_MIN_HEADROOM_SHARE * ttft
        if low and comp not in explained and (worst is None or head > rows[worst[0]][1]):
            worst = (comp, peers)
    if worst is None:
        return None
    comp, peers = worst
    eff, head = rows[comp]
    return Finding("below-peers", f"{comp} runs far below its floor compared with the other components",
                   f"roofline: {comp} efficiency {eff:.1%} against a median of {peers:.1%} for the other "
                   f"{len(rows) - 1}; {head:.3g} ms above its floor, {head / ttft:.0%} of the TTFT", head,
                   f"look at {comp}'s kernels in the trace (ttft-profile analyze on trace.json.gz): an unfused or "
                   "fallback implementation, a layout copy, or launch overhead")


def _peer_rows(ctx: Context) -> dict[str, tuple[float, float]]:
    """component -> (efficiency, headroom ms) of the components whose efficiency says something about
    their kernels: measured, with a floor, and a floor per call above dispatch overhead."""
    roof = getattr(ctx.tables, "roofline", None)
    if roof is None:
        return {}
    calls = ctx.tables.breakdown.set_index("component")["calls"]
    out = {}
    for row in roof.itertuples(index=False):
        per_call = row.floor_ms / max(int(calls.get(row.component, 1)), 1)
        if row.measured_ms > 0 and per_call >= PEER_MIN_FLOOR_MS_PER_CALL and math.isfinite(row.efficiency):
            out[row.component] = (float(row.efficiency), max(float(row.headroom_ms), 0.0))
    return out


# In order: below_peers last, as it reads which components the others already explain.
RULES: list[Rule] = [all_position_logits, sdpa_math_fallback, eager_attention_long_prompt, fp32_upcast,
                     host_sync_in_forward, padding_waste, tf32_off, below_peers]
