"""Fits over a length sweep: known coefficients back, crossover and extrapolation by hand, length parsing."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analyzers.lengths import parse_lengths
from analyzers.scaling import (
    Fit,
    crossover,
    extrapolate,
    fit_component,
    fit_components,
    fit_sweep,
    linear_drift,
)

LENGTHS = [512, 1024, 2048, 4096, 8192, 16384, 32768]
# deterministic "noise" of about a microsecond, alternating so it does not look like a trend
NOISE = np.array([1.0, -1.0, 0.5, -0.5, 0.8, -0.3, 0.2]) * 1e-3
A0, A1, A2 = 0.5, 2e-3, 3e-7  # attention
M0, M1 = 1.0, 0.01  # mlp


def attention_ms(n):
    return A0 + A1 * n + A2 * n * n


def mlp_ms(n):
    return M0 + M1 * n


def sweep_table() -> pd.DataFrame:
    rows = []
    for n, e in zip(LENGTHS, NOISE, strict=True):
        rows += [
            {"seq_len": n, "component": "attention", "ms": attention_ms(n) + e},
            {"seq_len": n, "component": "mlp", "ms": mlp_ms(n) - e},
            {"seq_len": n, "component": "qk_norm", "ms": 0.0},  # absent from the model
        ]
    return pd.DataFrame(rows)


def hand_crossover() -> float:
    # attention − mlp = A2·n² + (A1 − M1)·n + (A0 − M0) = 0, the positive root
    a, b, c = A2, A1 - M1, A0 - M0
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)


def test_recovers_known_coefficients():
    table = sweep_table()
    att = table[table.component == "attention"]
    fit = fit_component(att.seq_len, att.ms, quadratic=True, component="attention")
    assert fit.coefficients == pytest.approx((A0, A1, A2), rel=0.01)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.quadratic and len(fit.residuals) == len(LENGTHS)
    assert max(abs(r) for r in fit.residuals) < 2e-3  # the noise, nothing more
    mlp = table[table.component == "mlp"]
    fit = fit_component(mlp.seq_len, mlp.ms, quadratic=False, component="mlp")
    assert fit.coefficients == pytest.approx((M0, M1, 0.0), rel=0.01)
    assert fit.coefficients[2] == 0.0 and not fit.quadratic
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)


def test_fit_sweep_table_and_the_drift_of_a_linear_ttft():
    table = fit_sweep(sweep_table()).set_index("component")
    # absent components are not fitted; the TTFT comes last
    assert list(table.index) == ["attention", "mlp", "ttft"]
    assert table.loc["attention", "fit"] == "quadratic" and table.loc["mlp", "fit"] == "linear"
    assert table.loc["attention", ["c0", "c1", "c2"]].tolist() == pytest.approx([A0, A1, A2], rel=0.01)
    assert table.loc["mlp", ["c0", "c1"]].tolist() == pytest.approx([M0, M1], rel=0.01)
    assert table.loc["mlp", "c2"] == 0.0
    # "TTFT = k·n + C" misses by tens of ms once attention's n² term dominates
    assert table.loc["ttft", "fit"] == "linear" and table.loc["ttft", "c2"] == 0.0
    assert table.loc["ttft", "r2"] < 0.99
    assert table.loc["ttft", "max_abs_residual_ms"] > 10
    drift = linear_drift(sweep_table())
    assert drift["seq_len"].tolist() == LENGTHS
    assert drift["ttft_ms"].tolist() == pytest.approx([attention_ms(n) + mlp_ms(n) for n in LENGTHS], abs=1e-9)
    assert drift["residual_ms"].sum() == pytest.approx(0, abs=1e-6)  # least squares with an intercept
    assert (drift["ttft_ms"] - drift["linear_ms"]).tolist() == pytest.approx(drift["residual_ms"].tolist())


def test_ttft_rows_are_used_when_given_and_a_linear_ttft_fits_linear_data():
    rows = [{"seq_len": n, "component": c, "ms": v} for n in LENGTHS
            for c, v in (("mlp", mlp_ms(n)), ("ttft", 5 + 2 * mlp_ms(n)))]
    fits = fit_components(pd.DataFrame(rows))
    assert fits["ttft"].coefficients == pytest.approx((5 + 2 * M0, 2 * M1, 0.0))
    assert max(abs(r) for r in fits["ttft"].residuals) < 1e-9


def test_two_lengths_fit_attention_linearly():
    rows = [{"seq_len": n, "component": "attention", "ms": attention_ms(n)} for n in (1024, 2048)]
    fits = fit_components(pd.DataFrame(rows))
    assert not fits["attention"].quadratic


def test_crossover_by_hand():
    table = sweep_table()
    fits = fit_components(table)
    expected = hand_crossover()  # ≈ 26729 tokens
    assert 26_000 < expected < 27_000
    assert crossover(fits["attention"], fits["mlp"], n_max=32768) == pytest.approx(expected, rel=1e-3)
    # beyond n_max it does not count
    assert crossover(fits["attention"], fits["mlp"], n_max=16384) is None
    # exact coefficients give the exact root
    att = _fit((A0, A1, A2), quadratic=True)
    mlp = _fit((M0, M1, 0.0))
    assert crossover(att, mlp, n_max=1e6) == pytest.approx(expected, rel=1e-12)


def _fit(coefficients, quadratic=False) -> Fit:
    p = 3 if quadratic else 2
    coefficients = tuple(coefficients) + (0.0,) * (3 - len(coefficients))
    return Fit("x", coefficients, 1.0, (), tuple((0.0,) * p for _ in range(p)))


def test_crossover_none_when_attention_never_overtakes():
    # always below: attention has the smaller slope and no n² term
    assert crossover(_fit((0.0, 1e-3)), _fit((1.0, 1e-2)), n_max=1e9) is None
    # always above from the start: nothing to overtake
    assert crossover(_fit((2.0, 1e-2, 1e-7), quadratic=True), _fit((1.0, 1e-2)), n_max=1e9) is None
    # two linear fits: the root of their difference
    assert crossover(_fit((0.0, 2e-2)), _fit((10.0, 1e-2)), n_max=1e9) == pytest.approx(1000)
    # above, below on (100, 2000), above again: only the rise at 2000 is an overtaking
    dip = _fit((0.2, -2.1e-3, 1e-6), quadratic=True)  # 1e-6·(n − 100)·(n − 2000)
    assert crossover(dip, _fit((0.0, 0.0)), n_max=1e6) == pytest.approx(2000)
    assert crossover(dip, _fit((0.0, 0.0)), n_max=1500) is None


def test_extrapolation_within_the_stated_uncertainty():
    fits = fit_components(sweep_table())
    table = extrapolate(fits, [3000, 65536]).set_index(["component", "seq_len"])
    for comp, truth in (("attention", attention_ms), ("mlp", mlp_ms)):
        for n in (3000, 65536):
            ms, se = table.loc[(comp, n), ["ms", "stderr_ms"]]
            assert 0 < se < 0.1
            assert abs(ms - truth(n)) <= 3 * se
    assert not table.loc[("attention", 3000), "extrapolated"]
    assert table.loc[("attention", 65536), "extrapolated"]
    # the TTFT line is far less certain than the component fits
    assert table.loc[("ttft", 65536), "stderr_ms"] > 100 * table.loc[("attention", 65536), "stderr_ms"]
    # a list of fits works as well as a mapping
    assert len(extrapolate(list(fits.values()), [100])) == len(fits)


def test_as_many_points_as_parameters_has_no_uncertainty_to_give():
    ns = [1024, 2048, 4096]
    fit = fit_component(ns, [attention_ms(n) for n in ns], quadratic=True)
    assert fit.coefficients == pytest.approx((A0, A1, A2), rel=1e-9)
    ms, se = fit.predict(8192)
    assert ms == pytest.approx(attention_ms(8192))
    assert math.isnan(se)
    assert all(math.isnan(v) for row in fit.covariance for v in row)


def test_too_few_lengths_for_the_fit():
    with pytest.raises(ValueError, match="at least 3 distinct lengths"):
        fit_component([1024, 2048], [1.0, 2.0], quadratic=True, component="attention")
    with pytest.raises(ValueError, match="at least 2 distinct lengths"):
        fit_component([1024, 1024], [1.0, 2.0], quadratic=False)


@pytest.mark.parametrize("text,expected", [
    ("1024,2048,4096", [1024, 2048, 4096]),
    ("1k..32k", [1024 * 2**i for i in range(6)]),
    ("512..4096", [512, 1024, 2048, 4096]),
    (" 1k , 3k ,4K", [1024, 3072, 4096]),
    ("128,512..2k,3000", [128, 512, 1024, 2048, 3000]),
    ("1..2", [1, 2]),
])
def test_parse_lengths(text, expected):
    assert parse_lengths(text) == expected


@pytest.mark.parametrize("text,message", [
    ("1024", "at least two lengths"),
    ("4k", "at least two lengths"),
    ("2048,1024", "increasing order"),
    ("1024,1024", "repeated"),
    ("4k..1k", "does not increase"),
    ("1k,2k,1k..4k", "increasing order"),
    ("0,1024", "not positive"),
    ("-512,1024", "not positive"),
    ("0..1024", "positive"),
    ("abc", "not a length"),
    ("1.5k,2k", "not a length"),
    ("1k..", "not a length"),
    ("1024,,2048", "not a length"),
    ("1k..2k..4k", "not a range"),
    ("512..3000", "doubling"),
    ("", "no lengths"),
])
def test_parse_lengths_errors_say_what_and_how(text, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_lengths(text)
    # one sentence: a single full stop, at the end
    msg = str(info.value).replace("e.g. ", "e.g.,")
    assert msg.endswith(".") and msg.count(". ") == 0
