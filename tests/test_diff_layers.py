"""Comparing two runs, and scaling a run of K built layers to the model's L: numbers worked out by hand."""
from __future__ import annotations

import dataclasses
import math

import pytest

from analyzers.components import breakdown
from analyzers.diff import diff_runs, diff_warnings
from analyzers.layers import full_model_ttft_ms, layer_extrapolation, layer_spread
from analyzers.run import Run

MS = 1_000_000


def make_run(ttft_ms, rows, seq_len=1024, layers_built=2, layers_total=8,
             present=("embedding", "rope", "attention", "mlp", "lm_head")) -> Run:
    return Run(model="hand-made", seq_len=seq_len, batch=1, dtype="float32", device="cpu", device_name="cpu",
               attn="sdpa", warmup=0, repeat=len(ttft_ms), ttft_ns=[round(t * MS) for t in ttft_ms],
               cold_ttft_ns=999 * MS, component_ns=rows, components_present=list(present),
               layers_built=layers_built, layers_total=layers_total)


def row(repeat, component, ms, layer=None, detail=None):
    return {"repeat": repeat, "component": component, "layer": layer, "detail": detail, "ns": round(ms * MS),
            "calls": 1}


def two_layer_repeat(repeat, attention=(3.0, 5.0), mlp=(4.0, 4.0)):
    """Embedding 2, rope 1 (shared) + 0.5 per layer, attention and mlp per layer, lm_head 6."""
    rows = [row(repeat, "embedding", 2.0), row(repeat, "rope", 1.0), row(repeat, "lm_head", 6.0)]
    for layer in (0, 1):
        rows += [row(repeat, "rope", 0.5, layer), row(repeat, "attention", attention[layer], layer),
                 row(repeat, "mlp", mlp[layer] / 2, layer, detail="up"),
                 row(repeat, "mlp", mlp[layer] / 2, layer, detail="down")]
    return rows


def layered_run() -> Run:
    # TTFTs 45, 40, 39.5 -> the median is repeat 1 (40 ms); repeats 0 and 2 have other numbers on purpose
    rows = (two_layer_repeat(0, attention=(9.0, 9.0)) + two_layer_repeat(1)
            + two_layer_repeat(2, attention=(1.0, 20.0)))
    return make_run([45, 40, 39.5], rows)


def test_layer_extrapolation_two_of_eight_by_hand():
    table = layer_extrapolation(layered_run(), breakdown(layered_run())).set_index("component")
    # median repeat: embedding 2, rope 1 + 0.5 + 0.5, attention 3 + 5, mlp 4 + 4, lm_head 6,
    # other = 40 − 26 = 14; factor 8 / 2 = 4 on the per-layer part only
    expected = {"embedding": (2, 2), "rope": (2, 1 + 1 * 4), "attention": (8, 32), "mlp": (8, 32),
                "lm_head": (6, 6), "other": (14, 14)}
    for comp, (measured, estimate) in expected.items():
        assert table.loc[comp, "measured_ms"] == pytest.approx(measured), comp
        assert table.loc[comp, "estimate_ms"] == pytest.approx(estimate), comp
    assert "qk_norm" not in table.index and "sampling" not in table.index  # not in the model, 0 ms
    assert table.loc["attention", "factor"] == 4 and table.loc["embedding", "factor"] == 1
    assert table.loc["attention", "estimate"].startswith("estimate: ×4")
    assert "rest unchanged" in table.loc["rope", "estimate"]
    assert table.loc["embedding", "estimate"].startswith("unchanged")
    # TTFT = 40 + (8/2 − 1)·(1 + 8 + 8) = 91, and the component estimates add up to it
    assert table.loc["ttft", "measured_ms"] == pytest.approx(40)
    assert table.loc["ttft", "estimate_ms"] == pytest.approx(91)
    assert full_model_ttft_ms(layered_run()) == pytest.approx(91)
    assert table.drop(index="ttft")["estimate_ms"].sum() == pytest.approx(91)
    assert list(table.index)[-1] == "ttft"


def test_layer_spread_by_hand():
    table = layer_spread(layered_run()).set_index("component")
    assert list(table.index) == ["rope", "attention", "mlp"]  # only components with layer rows, forward order
    att = table.loc["attention"]
    assert att["layers"] == 2 and att["layer_ms"] == pytest.approx((3, 5))
    assert (att["mean_ms"], att["min_ms"], att["max_ms"]) == pytest.approx((4, 3, 5))
    assert att["cv"] == pytest.approx(1 / 4)  # population sd of (3, 5) is 1
    assert (att["min_layer"], att["max_layer"]) == (0, 1)
    assert table.loc["mlp", "layer_ms"] == pytest.approx((4, 4))  # details of a layer add up
    assert table.loc["mlp", "cv"] == 0
    assert table.loc["rope", "mean_ms"] == pytest.approx(0.5)  # the shared rope call is not a layer's


def test_layer_spread_of_one_layer_has_no_cv():
    run = make_run([10], [row(0, "mlp", 4.0, layer=0)], layers_built=1, layers_total=4)
    assert math.isnan(layer_spread(run).set_index("component").loc["mlp", "cv"])


def test_all_layers_built_estimates_the_measurement():
    run = dataclasses.replace(layered_run(), layers_total=2)
    table = layer_extrapolation(run, breakdown(run)).set_index("component")
    assert table["estimate_ms"].tolist() == pytest.approx(table["measured_ms"].tolist())
    assert table.loc["ttft", "estimate"].startswith("measured")


def test_layer_counts_must_be_recorded():
    with pytest.raises(ValueError, match="layers_built / layers_total"):
        layer_extrapolation(dataclasses.replace(layered_run(), layers_built=0, layers_total=0), breakdown(dataclasses.replace(layered_run(), layers_built=0, layers_total=0)))
    with pytest.raises(ValueError, match="edited or is corrupt"):
        full_model_ttft_ms(dataclasses.replace(layered_run(), layers_built=9))


def test_diff_of_the_same_data_flags_nothing():
    a, b = layered_run(), layered_run()
    table = diff_runs(a, b)
    assert not table["flagged"].any()
    assert table["delta_ms"].abs().max() == 0
    assert table.attrs["warnings"] == [] and diff_warnings(a, b) == []
    assert "qk_norm" not in set(table["component"])  # absent in both: left out
    assert table["component"].iloc[-1] == "ttft"


def sweep_point(seq_len, attention, mlp):
    """Per-repeat attention and mlp times (one layer each), ttft = sum + 1."""
    rows, ttft = [], []
    for i, (att, m) in enumerate(zip(attention, mlp, strict=True)):
        rows += [row(i, "attention", att, layer=0), row(i, "mlp", m, layer=0)]
        ttft.append(att + m + 1.0)
    return make_run(ttft, rows, seq_len=seq_len, layers_built=1, layers_total=1, present=("attention", "mlp"))


def test_diff_flags_attention_beyond_the_repeat_noise():
    # Seven repeats each: the rule is a Mann-Whitney test, Holm-corrected over the rows (analyzers/diff.py);
    # with three the smallest possible p (2 / C(6, 3) = 0.1) could never flag anything.
    a = sweep_point(1024, attention=(10, 11, 12, 10.5, 11.5, 10.2, 11.8), mlp=(20, 21, 22, 20.5, 21.5, 20.2, 21.8))
    b = sweep_point(4096, attention=(100, 102, 104, 101, 103, 100.5, 103.5),
                    mlp=(20.5, 21, 21.5, 20.8, 21.2, 20.6, 21.4))
    table = diff_runs(a, b).set_index("component")
    att = table.loc["attention"]
    # medians: TTFT 33 -> repeat 1 in a (11 ms), TTFT 124 -> repeat 1 in b (102 ms)
    assert (att["ms_a"], att["ms_b"], att["delta_ms"]) == pytest.approx((11, 102, 91))
    assert att["delta_pct"] == pytest.approx(100 * 91 / 11)
    assert (att["spread_a_ms"], att["spread_b_ms"]) == pytest.approx((2, 4))
    # every b above every a: two of the C(14, 7) = 3432 splits are as extreme; 4 rows (attention, mlp, other, ttft)
    assert att["p_value"] == pytest.approx(2 / 3432) and att["p_holm"] == pytest.approx(4 * 2 / 3432)
    assert bool(att["significant"]) and bool(table.loc["ttft", "significant"])
    # ...but run a's TTFT spreads (35 - 31) / 33 = 12% over its repeats, beyond the 10% a run may spread and be
    # trusted (analyzers/noise.py), so the significant rows are candidates, not changes
    assert not bool(att["flagged"]) and not bool(table.loc["ttft", "flagged"])
    assert not bool(table.loc["mlp", "significant"])  # same median, interleaved repeats
    assert table.loc["other", "p_value"] == 1 and not bool(table.loc["other", "flagged"])  # 1 ms in every repeat
    warnings = table.attrs["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("seq_len differs (1024 vs 4096)")


def test_one_slow_repeat_does_not_flag_a_component():
    # the old rule compared [min, max] ranges; a rank test sees one slow repeat as one rank, not a change
    same = (10, 10.4, 10.8, 11.2, 11.6, 12, 12.4)
    a = sweep_point(1024, attention=same, mlp=(5,) * 7)
    b = sweep_point(1024, attention=same[:-1] + (124,), mlp=(5,) * 7)
    att = diff_runs(a, b).set_index("component").loc["attention"]
    assert att["delta_ms"] == 0 and att["spread_b_ms"] == pytest.approx(114)
    assert att["p_value"] > 0.5 and not bool(att["flagged"])


def test_diff_of_a_component_in_one_run_only_and_single_repeats():
    a = make_run([10], [row(0, "mlp", 4.0, layer=0)], present=("mlp",))
    b = dataclasses.replace(make_run([12], [row(0, "mlp", 4.0, layer=0), row(0, "qk_norm", 1.0, layer=0)],
                                     present=("mlp", "qk_norm")), dtype="bfloat16")
    table = diff_runs(a, b).set_index("component")
    assert table.loc["qk_norm", "ms_a"] == 0 and table.loc["qk_norm", "ms_b"] == pytest.approx(1)
    assert math.isnan(table.loc["qk_norm", "delta_pct"])
    # single repeats: a rank test cannot tell a change from noise (smallest p 2 / C(2, 1) = 1), so nothing flags
    assert not table["flagged"].any()
    test = table.attrs["test"]
    assert not test.can_flag and test.smallest_p == 1 and "profile both runs with" in test.note
    assert diff_warnings(a, b) == ["dtype differs (float32 vs bfloat16): the runs do not measure the same thing, "
                                   "so read the deltas as the effect of that change too."]
