"""Prefill lint finds each problem planted in a tiny model's prefill, and stays silent on a clean one.

Each planted test profiles a tiny model on the CPU (warmup 0, one repeat, short prompts except the
eager case, which needs a long one by definition) and asserts the finding's key and that its ms is
a number where the rule can know it. The rules the CPU cannot plant (TF32, an SDPA math fallback
on a GPU, a component far below its peers) are checked on hand-made runs and traces.
"""
from __future__ import annotations

import gzip
import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from analyzers.cost.ceilings import Ceilings
from analyzers.lint import Context, below_peers, lint
from analyzers.lint_trace import trace_facts
from analyzers.tables import compute_tables
from tests.test_breakdown import make_run, row

MS = 1_000_000
# Rates of no real machine: enough for a roofline (and so the ms an eager rule can know) on any CPU.
CEILINGS = Ceilings("test cpu", {"float32": 1e11}, 1e10, "made up for the test").to_dict()


def profiled(model, tmp_path, seq_len=64, trace=True, **options):
    """A profiled prefill of `model` as the CLI would lint it: its folder holds its trace."""
    from profiler.measure import profile_prefill

    run = profile_prefill(model, seq_len, trace_dir=str(tmp_path) if trace else None, warmup=0, repeat=1,
                          telemetry_interval_ms=None, **options)
    run.path = str(tmp_path)
    return run


def keys(findings) -> dict:
    return {f.key: f for f in findings}


def fresh(dtype="float32", attn="sdpa"):
    """A tiny-llama of its own, for a test that patches it (the session's models stay clean)."""
    from profiler.build import build
    from profiler.catalog import resolve

    return build(resolve("tiny-llama"), None, dtype, "cpu", attn)


def test_a_clean_run_has_no_findings(tiny_model, tmp_path):
    run = profiled(tiny_model("tiny-llama"), tmp_path)
    facts = trace_facts(run)
    assert facts is not None and sum(facts.sdpa.values()) == 4  # the trace was read: one fused SDPA a layer
    assert compute_tables(run).findings == []


def test_all_position_logits(tmp_path):
    model = fresh()
    inner = type(model).forward

    def forward(input_ids=None, use_cache=None, **_):  # no logits_to_keep: lm_head runs on every position
        return inner(model, input_ids=input_ids, use_cache=use_cache)

    model.forward = forward
    run = profiled(model, tmp_path, trace=False)
    found = keys(compute_tables(run).findings)
    assert run.logits_kept == "all"
    assert found["all-position-logits"].ms > 0


def test_eager_attention_at_4096(tiny_model, tmp_path):
    from profiler.measure import ModelOrigin

    run = profiled(tiny_model("tiny-llama", "eager"), tmp_path, seq_len=4096, trace=False,
                   origin=ModelOrigin("tiny-llama", ceilings=CEILINGS))
    finding = keys(compute_tables(run).findings)["eager-attention-long-prompt"]
    assert finding.ms > 0 and "4096²" in finding.evidence


def test_a_bfloat16_norm_upcasts_to_float32(tmp_path):
    run = profiled(fresh("bfloat16"), tmp_path)  # LlamaRMSNorm computes in float32 and converts back
    finding = keys(compute_tables(run).findings)["fp32-upcast"]
    assert finding.ms > 0 and "bfloat16->float32" in finding.evidence and "norm" in finding.evidence


def test_an_item_in_the_forward(tmp_path):
    model = fresh()
    mlp = model.model.layers[1].mlp
    inner = type(mlp).forward

    def forward(x):
        x.sum().item()  # a host sync in the middle of the forward
        return inner(mlp, x)

    mlp.forward = forward
    finding = keys(compute_tables(profiled(model, tmp_path)).findings)["host-sync-in-forward"]
    assert "aten::item x1 in mlp (first in mlp/L1)" in finding.evidence and finding.ms > 0


def test_padding_waste(tmp_path):
    """A batch of 2 prompts, each with 16 of its 64 positions left-padded (pad_fraction=0.25): the run
    records the padding and lint bounds the waste at a quarter of TTFT."""
    run = profiled(fresh(), tmp_path, batch=2, trace=False, pad_fraction=0.25)
    assert run.padding == {"pad_tokens": 2 * 16, "tokens": 2 * 64}
    tables = compute_tables(run)
    finding = keys(tables.findings)["padding-waste"]
    assert finding.ms == pytest.approx(tables.stats["p50_ms"] * 0.25)
    assert "padding-waste" not in keys(compute_tables(profiled(fresh(), tmp_path / "clean", batch=2,
                                                               trace=False)).findings)


def test_findings_are_ranked_costliest_first_and_in_json(tmp_path):
    from analyzers.render.summary import run_json

    run = make_run([10 * MS], [row(0, "lm_head", 4 * MS)])
    run.logits_kept, run.padding = "all", {"pad_tokens": 50, "tokens": 100}
    tables = compute_tables(run)
    assert [f.key for f in tables.findings] == ["padding-waste", "all-position-logits"]  # 5 ms, then 4·(1 - 1/16)
    assert [f["key"] for f in run_json(tables)["findings"]] == ["padding-waste", "all-position-logits"]


def test_tf32_off_on_a_gpu():
    run = make_run([10 * MS], [row(0, "mlp", 6 * MS), row(0, "qkv_proj", 2 * MS)])
    run.device, run.precision = "cuda:0", {"float32_matmul": "ieee", "float32_matmul_precision": "highest"}
    run.ceilings = Ceilings("gpu", {"float32": 60e12, "tf32": 480e12}, 3e12, "made up").to_dict()
    finding = keys(lint(run, compute_tables(run)))["tf32-off"]
    assert finding.ms == pytest.approx(8 * (1 - 60 / 480))
    run.precision = {"float32_matmul": "tf32"}
    assert "tf32-off" not in keys(lint(run, compute_tables(run)))


def _tables(efficiency: dict, headroom: dict, ttft_ms=100.0, floor_ms=1.0):
    roof = pd.DataFrame([{"component": c, "efficiency": e, "headroom_ms": headroom.get(c, 1.0), "floor_ms": floor_ms,
                          "measured_ms": floor_ms / e} for c, e in efficiency.items()])
    breakdown = pd.DataFrame([{"component": c, "calls": 1, "ms": floor_ms / e} for c, e in efficiency.items()])
    return SimpleNamespace(roofline=roof, breakdown=breakdown, stats={"p50_ms": ttft_ms})


def test_a_component_far_below_its_peers():
    eff = {"qkv_proj": 0.6, "o_proj": 0.5, "mlp": 0.7, "norm": 0.05}
    run = make_run([100 * MS], [])
    finding = below_peers(Context(run, _tables(eff, {"norm": 20.0}), None))
    assert finding.key == "below-peers" and "norm" in finding.title and finding.ms == 20.0
    assert below_peers(Context(run, _tables(eff, {"norm": 2.0}), None)) is None  # 2% of the TTFT: not material
    assert below_peers(Context(run, _tables({**eff, "norm": 0.2}, {"norm": 20.0}), None)) is None  # within 4x
    assert below_peers(Context(run, _tables(eff, {"norm": 20.0}, floor_ms=0.01), None)) is None  # overhead-bound


def _trace(tmp_path, events: list[dict], marks=None):
    """A run whose folder holds a hand-written Kineto trace."""
    doc = {"traceEvents": events, "baseTimeNanoseconds": 0}
    if marks is not None:
        doc["ttft_profile"] = {"phase_marks_unix_ns": marks}
    with gzip.open(tmp_path / "trace.json.gz", "wt") as fh:
        json.dump(doc, fh)
    run = make_run([10 * MS], [row(0, "attention", 5 * MS)])
    run.path, run.trace_file, run.device = str(tmp_path), "trace.json.gz", "cuda:0"
    return run


def op(name, ts, dur, cat="cpu_op", **args):
    return {"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": dur, "args": args}


def test_a_gpu_trace_with_the_math_kernel_and_a_stream_sync(tmp_path):
    events = [op("ttft/attention/L0", 100, 100), op("aten::scaled_dot_product_attention", 110, 50,
                                                    **{"Input Dims": [[1], [1], [1], [1, 1, 8, 8]]}),
              op("aten::_scaled_dot_product_attention_math", 112, 40),
              op("ttft/mlp/L0", 200, 100), op("aten::item", 210, 30), op("aten::_local_scalar_dense", 211, 28),
              op("cudaStreamSynchronize", 215, 20, cat="cuda_runtime"),
              op("ttft/attention/L1", 300, 100), op("aten::_scaled_dot_product_flash_attention", 310, 50),
              op("aten::_flash_attention_forward", 312, 40),  # the fused call's own op: not a second call
              op("ttft/norm/L1", 400, 100),
              op("aten::_to_copy", 410, 20, **{"Input Dims": [[1, 16, 256], [], []], "Input type": ["c10::BFloat16"],
                                               "Concrete Inputs": ["", "6", ""]}),
              op("cudaLaunchKernel", 415, 5, cat="cuda_runtime", correlation=7),
              op("elementwise_kernel", 430, 4, cat="kernel", correlation=7),
              op("aten::item", 1000, 30)]  # after the forward (sampling): not the model's
    run = _trace(tmp_path, events, marks=[0, 50_000, 500_000])
    run.dtype = "bfloat16"
    found = keys(lint(run))
    assert "x1 of 2 SDPA calls" in found["sdpa-math-fallback"].evidence
    assert found["fp32-upcast"].ms == pytest.approx(0.004)  # the conversion's kernel, not its 20 µs on the host
    assert "explicit attn_mask" in found["sdpa-math-fallback"].evidence
    sync = found["host-sync-in-forward"]
    assert sync.evidence.startswith("trace: aten::item x1 in mlp (first in mlp/L0)")
    # on a GPU the host's 30 µs in the sync is mostly queued forward work, not what removing it wins
    assert sync.ms is None and "device idle" in sync.evidence


def test_an_unreadable_trace_keeps_the_trace_rules_silent(tmp_path):
    run = _trace(tmp_path, [])
    (tmp_path / "trace.json.gz").write_bytes(b"\x1f\x8b not a gzip")
    assert lint(run) == []
    run.trace_file = "missing.json.gz"
    assert lint(run) == [] and math.isfinite(compute_tables(run).stats["p50_ms"])


def test_a_conversion_with_a_strange_dtype_code_is_not_a_crash(tmp_path):
    """'²' passes str.isdigit but not int(): a hand-edited or foreign trace keeps lint silent, not broken."""
    import json

    from analyzers.lint_trace import read_facts

    events = [{"ph": "X", "name": "ttft/norm/L0", "cat": "user_annotation", "pid": 1, "tid": 1, "ts": 0, "dur": 100},
              {"ph": "X", "name": "aten::_to_copy", "cat": "cpu_op", "pid": 1, "tid": 1, "ts": 10, "dur": 5,
               "args": {"Input Dims": [[4, 8]], "Input type": ["c10::BFloat16"], "Concrete Inputs": ["", "²"]}}]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": events}))
    facts = read_facts(str(path))
    assert facts is None or not facts.conversions
