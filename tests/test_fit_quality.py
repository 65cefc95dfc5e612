"""Fits that say how good they are: a sweep extrapolates only fits that pass FIT_RULE, and says why not.

Synthetic sweep tables with known shapes; every expected number is worked out here by hand or by
numpy's polyfit and the textbook formula for a line's prediction error, not by analyzers.scaling.
"""
from __future__ import annotations

import io
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from analyzers.jsonout import dumps
from analyzers.render.sweep import fit_lines, render_sweep
from analyzers.scaling import MAX_RELATIVE_STDERR, extrapolate_total, fit_component, refusal
from analyzers.sweep import Sweep, load_sweep, summarise

LENGTHS = [512, 1024, 2048, 4096, 8192, 16384, 32768]
TARGETS = [65536, 131072]  # 2x and 4x the longest length: where summarise extrapolates
# deterministic noise, alternating so it is no trend
NOISE = np.array([1.0, -1.0, 0.5, -0.5, 0.8, -0.3, 0.2])
A0, A1, A2 = 0.5, 2e-3, 3e-7  # attention, ms
M0, M1 = 1.0, 0.01  # mlp, ms


def table(parts: dict[str, list[float]], lengths=LENGTHS) -> pd.DataFrame:
    rows = [{"seq_len": n, "component": c, "ms": ms[i]} for c, ms in parts.items() for i, n in enumerate(lengths)]
    ttft = [sum(ms[i] for ms in parts.values()) for i in range(len(lengths))]
    rows += [{"seq_len": n, "component": "ttft", "ms": t} for n, t in zip(lengths, ttft, strict=True)]
    return pd.DataFrame(rows)


def clean() -> dict[str, list[float]]:
    return {"attention": [A0 + A1 * n + A2 * n * n + 1e-3 * e for n, e in zip(LENGTHS, NOISE, strict=True)],
            "mlp": [M0 + M1 * n - 1e-3 * e for n, e in zip(LENGTHS, NOISE, strict=True)]}


def rows(summary: dict, field: str, component: str | None = None) -> dict[int, dict]:
    return {r["seq_len"]: r for r in summary[field] if component is None or r["component"] == component}


def fit_row(summary: dict, component: str) -> dict:
    return next(f for f in summary["fits"] if f["component"] == component)


def line_error(lengths, ms, n0) -> tuple[float, float, float]:
    """(prediction, its standard error, R²) of a least-squares line at n0, by the textbook formulas."""
    x, y = np.asarray(lengths, float), np.asarray(ms, float)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    s2 = (resid @ resid) / (len(x) - 2)
    sxx = ((x - x.mean()) ** 2).sum()
    r2 = 1 - (resid @ resid) / ((y - y.mean()) ** 2).sum()
    return intercept + slope * n0, math.sqrt(s2 * (1 / len(x) + (n0 - x.mean()) ** 2 / sxx)), r2


def test_a_clean_quadratic_extrapolates_and_the_crossover_is_reported():
    summary = summarise(table(clean()))
    assert fit_row(summary, "attention")["extrapolate"] and fit_row(summary, "mlp")["extrapolate"]
    for n in TARGETS:
        att, mlp = rows(summary, "extrapolated", "attention")[n], rows(summary, "extrapolated", "mlp")[n]
        assert att["extrapolated"] and att["refused_because"] == ""
        truth = A0 + A1 * n + A2 * n * n
        assert abs(att["ms"] - truth) <= 3 * att["stderr_ms"] and att["stderr_ms"] < 0.01 * truth
        assert mlp["ms"] == pytest.approx(M0 + M1 * n, rel=1e-3)
        total = rows(summary, "extrapolated_ttft")[n]
        assert total["extrapolated"] and total["ms"] == pytest.approx(truth + M0 + M1 * n, rel=1e-3)
        assert total["stderr_ms"] == pytest.approx(math.hypot(att["stderr_ms"], mlp["stderr_ms"]))
    # attention - mlp = 0 at the positive root of A2·n² + (A1 - M1)·n + (A0 - M0), about 26,729 tokens
    a, b, c = A2, A1 - M1, A0 - M0
    assert summary["crossover_attention_over_mlp"] == pytest.approx((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a),
                                                                    rel=1e-3)
    assert summary["crossover_refused_because"] == ""
    text = "\n".join(fit_lines(summary))
    assert "extrapolated TTFT at 131,072 tokens" in text and "an extrapolation, not a measurement" in text
    assert "not extrapolated" not in text


def test_pure_noise_is_not_extrapolated_and_takes_the_crossover_with_it():
    noise = [1.0, 0.2, 0.9, 0.3, 1.1, 0.25, 0.8]  # MLP times that do not grow with n
    parts = {**clean(), "mlp": noise}
    summary = summarise(table(parts))
    ms, se, r2 = line_error(LENGTHS, noise, 65536)  # the first extrapolated length is where it fails
    assert r2 < 0.01 and se > MAX_RELATIVE_STDERR * ms  # about 0.707 ± 0.842 ms
    mlp = fit_row(summary, "mlp")
    assert not mlp["extrapolate"] and mlp["r2"] == pytest.approx(r2, abs=1e-9)
    assert f"{100 * se / ms:.0f}% of its {ms:,.3g} ms" in mlp["refused_because"]
    for n in TARGETS:  # no number where the fit was refused, in memory and in sweep.json
        assert math.isnan(rows(summary, "extrapolated", "mlp")[n]["ms"])
    written = json.loads(dumps(summary))
    assert all(r["ms"] is None and r["refused_because"] for r in written["extrapolated"] if r["component"] == "mlp")
    assert summary["crossover_attention_over_mlp"] is None
    assert summary["crossover_refused_because"].startswith("the mlp fit: at 65,536 tokens")
    assert fit_row(summary, "attention")["extrapolate"]  # the clean fit beside it still passes


def test_a_fit_that_goes_negative_is_not_extrapolated_even_with_r2_of_1():
    # an exact line falling 1 ms per 1,000 tokens: 10 - 0.001·n is -55.5 ms at 65,536 tokens
    lengths = [512, 1024, 2048, 4096, 8192]
    falling = [10 - 1e-3 * n for n in lengths]
    fit = fit_component(lengths, falling, quadratic=False, component="rope")
    assert fit.r2 == pytest.approx(1.0)
    why = refusal(fit, [16384, 32768])
    assert why.startswith("it goes to -6.38 ms at 16,384 tokens")
    parts = {"rope": falling, "mlp": [M0 + M1 * n for n in lengths]}
    summary = summarise(table(parts, lengths))
    assert not fit_row(summary, "rope")["extrapolate"] and fit_row(summary, "mlp")["extrapolate"]
    totals = rows(summary, "extrapolated_ttft")
    assert all(math.isnan(r["ms"]) and "rope go below 0 ms at 16,384" in r["refused_because"]
               for r in totals.values())
    out = io.StringIO()
    from rich.console import Console

    render_sweep(Sweep(table(parts, lengths), summary, "s"), Console(file=out, width=200))
    printed = out.getvalue()
    assert "no extrapolated TTFT at 16,384 and 32,768 tokens" in printed and "-55" not in printed
    assert "rope: it goes to -6.38 ms" in printed  # the reason, naming where it went wrong


def test_too_few_spare_lengths_are_refused_with_how_many_to_measure():
    five = LENGTHS[:5]
    parts = {"attention": [A0 + A1 * n + A2 * n * n for n in five], "mlp": [M0 + M1 * n for n in five]}
    summary = summarise(table(parts, five))
    # five lengths: a line has 3 spare for 2 parameters, attention's n² fit 2 spare for 3
    assert fit_row(summary, "mlp")["extrapolate"]
    assert fit_row(summary, "attention")["refused_because"] == (
        "5 lengths leave 2 spare for its 3 parameters, too few to know its error (measure 6 or more lengths)")
    assert "too few spare lengths" in rows(summary, "extrapolated_ttft")[2 * 8192]["refused_because"]
    assert summary["crossover_attention_over_mlp"] is None


def test_a_flat_component_with_small_noise_extrapolates_despite_an_r2_near_0():
    # lm_head for the last token costs the same at every length: nothing to explain, R² means nothing
    flat = [0.5 + 1e-3 * e for e in NOISE]
    ms, se, r2 = line_error(LENGTHS, flat, 131072)
    assert r2 < 0.1 and se < MAX_RELATIVE_STDERR * ms
    summary = summarise(table({**clean(), "lm_head": flat}))
    assert fit_row(summary, "lm_head")["extrapolate"]
    assert rows(summary, "extrapolated", "lm_head")[131072]["ms"] == pytest.approx(ms)


def test_the_sum_keeps_a_tiny_noisy_part_with_its_error_counted():
    # a 10 µs copy with 30% noise: too uncertain alone, yet positive and small against the TTFT
    copy = list(0.01 + 3e-3 * NOISE)
    summary = summarise(table({**clean(), "d2h": copy}))
    assert not fit_row(summary, "d2h")["extrapolate"]
    _, copy_se, _ = line_error(LENGTHS, copy, 131072)
    total = rows(summary, "extrapolated_ttft")[131072]
    parts = {c: rows(summary, "extrapolated", c)[131072] for c in ("attention", "mlp")}
    assert total["refused_because"] == ""
    assert total["stderr_ms"] == pytest.approx(math.sqrt(sum(p["stderr_ms"] ** 2 for p in parts.values())
                                                         + copy_se ** 2))


def test_the_sum_refuses_when_its_own_error_is_too_large():
    fits = [fit_component(LENGTHS, [1.0, 0.2, 0.9, 0.3, 1.1, 0.25, 0.8], False, "mlp")]
    out = extrapolate_total(fits, TARGETS)
    assert out["ms"].isna().all() and out["extrapolated"].all()
    assert "the sum's standard error" in out.loc[0, "refused_because"]


def test_a_sweep_json_from_before_the_rule_is_judged_when_read(llama_sweep, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(llama_sweep.path, folder)
    data = json.loads((folder / "sweep.json").read_text())
    for field in ("fit_rule", "crossover_refused_because"):
        data.pop(field)
    # what an older version wrote: a number for every extrapolation, whatever the fit
    data["extrapolated_ttft"] = [{"seq_len": 512, "ms": -198.0, "stderr_ms": None}]
    (folder / "sweep.json").write_text(json.dumps(data))
    summary = load_sweep(folder).summary
    # three lengths: no fit has the spare lengths the rule asks for
    assert all(r["ms"] is None or math.isnan(r["ms"]) for r in summary["extrapolated_ttft"])
    assert summary["fit_rule"] and summary["crossover_attention_over_mlp"] is None
    assert summary["runs"] == data["runs"]  # what only the CLI knew is kept


def test_the_report_states_the_rule_and_the_refusals(llama_sweep, tmp_path):
    from tests.conftest import cli

    folder = tmp_path / "s"
    shutil.copytree(llama_sweep.path, folder)
    assert cli("report", str(folder)).returncode == 0
    page = (folder / "report.html").read_text()
    assert "Rule: a fit is extrapolated only when" in page and "No crossover reported" in page
    assert "refused_because" in page and "Extrapolated (not measured)" in page


def test_inside_the_measured_range_nothing_is_refused():
    # three lengths cannot support an extrapolation, but 1,536 tokens lies between two measured ones
    fit = fit_component([1024, 2048, 4096], [1.0, 2.1, 3.9], quadratic=False, component="mlp")
    assert refusal(fit, [1536]) == "" and refusal(fit, [8192]).startswith("3 lengths leave 1 spare")
    from analyzers.scaling import extrapolate

    table = extrapolate([fit], [1536, 8192]).set_index("seq_len")
    assert not table.loc[1536, "extrapolated"] and table.loc[1536, "ms"] == pytest.approx(fit.predict(1536)[0])
    assert table.loc[8192, "extrapolated"] and math.isnan(table.loc[8192, "ms"])
