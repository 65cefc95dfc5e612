"""`diff` as a statistical test: the Mann-Whitney p against brute force, Holm by hand, and the promise
that two runs of one configuration flag nothing (at least 19 pairs in 20) while a real change is flagged."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from analyzers.diff import compare, diff_runs, holm, mann_whitney_p, repeats_needed, smallest_p
from analyzers.run import Run
from analyzers.store import save_run
from tests.conftest import cli

MS = 1_000_000
# ms of each component in a typical repeat; `other` (the remainder) gets 1.5 ms
BASE = {"embedding": 0.4, "norm": 2.0, "attention": 12.0, "mlp": 20.0, "lm_head": 5.0}


def brute_force_p(a: list[float], b: list[float]) -> float:
    """Two-sided p by enumerating every way to split the pooled samples, U counted pair by pair."""
    pooled, m = list(a) + list(b), len(a)

    def u(xs, ys):
        return sum((x > y) + 0.5 * (x == y) for x in xs for y in ys)

    centre, observed = m * len(b) / 2, abs(u(a, b) - m * len(b) / 2)
    splits = list(itertools.combinations(range(len(pooled)), m))
    extreme = 0
    for chosen in splits:
        xs = [pooled[i] for i in chosen]
        ys = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        extreme += abs(u(xs, ys) - centre) >= observed - 1e-9
    return extreme / len(splits)


@pytest.mark.parametrize("a,b", [
    ([1, 2, 3], [4, 5, 6]),  # complete separation: 2 of 20 splits
    ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]),  # 2 of 252
    ([3.1, 1.2, 5.5, 2.0], [4.4, 6.0, 2.5, 7.7, 0.3, 9.9]),
    ([1, 2, 2, 3, 5], [2, 3, 3, 4, 6, 6]),  # ties across and within the samples
    ([7, 7, 7], [7, 7, 8]),
    ([0, 0, 0, 0], [0, 0, 0, 0]),  # all tied: no evidence at all
])
def test_mann_whitney_is_exact(a, b):
    assert mann_whitney_p(a, b) == pytest.approx(brute_force_p(a, b), rel=1e-12)


def test_mann_whitney_known_values_and_symmetry():
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    a, b = [3.1, 1.2, 5.5, 2.0], [4.4, 6.0, 2.5, 7.7, 0.3, 9.9]
    assert mann_whitney_p(a, b) == pytest.approx(mann_whitney_p(b, a))
    assert mann_whitney_p([], [1.0]) == 1


def test_large_samples_use_the_normal_approximation():
    # 41 + 41 samples, no ties: a = 0..40, b = 20.5..60.5; U = #(a > b) = 1 + 2 + ... + 20 = 210
    a, b = [float(i) for i in range(41)], [20.5 + j for j in range(41)]
    mean, var = 41 * 41 / 2, 41 * 41 * (41 + 41 + 1) / 12
    z = (abs(210 - mean) - 0.5) / math.sqrt(var)
    assert mann_whitney_p(a, b) == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-9)


def test_holm_by_hand():
    # sorted 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, but never below 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 1.0]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_repeats_needed_by_hand():
    assert smallest_p(5, 5) == pytest.approx(2 / 252) and smallest_p(1, 1) == 1
    assert repeats_needed(12) == 6  # 0.05 / 12 = 0.0042: 2/252 = 0.0079 is above, 2/924 = 0.0022 below
    assert repeats_needed(6) == 5  # 0.05 / 6 = 0.0083 > 0.0079
    assert repeats_needed(1) == 4  # 2/20 = 0.1 > 0.05 >= 2/70 = 0.029


def synthetic_run(rng: np.random.Generator, repeats: int = 10, scale: dict | None = None, noise: float = 0.05,
                  machine: float = 0.15, outliers: float = 0.1) -> Run:
    """Per-repeat times from one noisy distribution: a machine factor shared by the repeat (lognormal),
    each component's own jitter, and now and then one component 5x slower in a repeat."""
    rows, ttft = [], []
    for r in range(repeats):
        factor = rng.lognormal(0, machine)
        total = 0
        for comp, ms in BASE.items():
            value = ms * (scale or {}).get(comp, 1.0) * factor * rng.lognormal(0, noise)
            if rng.random() < outliers:
                value *= 5
            ns = round(value * MS)
            rows.append({"repeat": r, "component": comp, "layer": None, "detail": None, "ns": ns, "calls": 1})
            total += ns
        ttft.append(total + round(1.5 * factor * rng.lognormal(0, noise) * MS))
    return Run(model="synthetic", seq_len=512, batch=1, dtype="float32", device="cpu", device_name="cpu",
               attn="sdpa", warmup=1, repeat=repeats, ttft_ns=ttft, cold_ttft_ns=99 * MS, component_ns=rows,
               components_present=list(BASE))


def test_two_runs_of_one_configuration_flag_nothing_in_19_of_20_pairs():
    rng = np.random.default_rng(11)
    flagged_pairs = []
    for pair in range(20):
        table = diff_runs(synthetic_run(rng), synthetic_run(rng))
        assert table.attrs["test"].can_flag and table.attrs["test"].tests == 7  # 5 components, other, ttft
        if table["flagged"].any():
            flagged_pairs.append(pair)
    assert len(flagged_pairs) <= 1, flagged_pairs


def test_a_real_change_is_flagged():
    rng = np.random.default_rng(5)
    a = synthetic_run(rng, noise=0.02, machine=0.01, outliers=0)
    b = synthetic_run(rng, scale={"attention": 1.3}, noise=0.02, machine=0.01, outliers=0)
    table = diff_runs(a, b).set_index("component")
    assert set(table.index[table["flagged"]]) == {"attention", "ttft"}
    # 10 repeats each, every b above every a: p = 2 / C(20, 10); Holm over 7 rows
    assert table.loc["attention", "p_value"] == pytest.approx(2 / math.comb(20, 10))
    assert table.loc["attention", "p_holm"] == pytest.approx(7 * 2 / math.comb(20, 10))
    assert table.loc["attention", "delta_pct"] == pytest.approx(30, abs=6)


def test_too_few_repeats_flag_nothing_and_say_how_many(tmp_path):
    rng = np.random.default_rng(3)
    a = synthetic_run(rng, repeats=5, noise=0.01, machine=0.01, outliers=0)
    b = synthetic_run(rng, repeats=5, scale={"mlp": 2.0}, noise=0.01, machine=0.01, outliers=0)
    table = diff_runs(a, b)
    test = table.attrs["test"]
    # 7 rows: Holm's first threshold 0.05 / 7 = 0.0071 is below the smallest p of 5 vs 5, 2 / 252 = 0.0079
    assert not test.can_flag and test.smallest_p == pytest.approx(2 / 252) and test.repeats_needed == 6
    assert not table["flagged"].any()
    assert table.set_index("component").loc["mlp", "p_value"] == pytest.approx(2 / 252)  # as strong as it gets
    assert test.note.startswith("no change can be flagged: with 5 and 5 repeats the smallest p the test can give "
                                "is 0.00794, above 0.05/7")
    assert test.note.endswith("profile both runs with 6 or more repeats.")
    save_run(a, tmp_path / "a")
    save_run(b, tmp_path / "b")
    shown = cli("diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert shown.returncode == 0 and "no change can be flagged" in shown.stdout and "changed" not in shown.stdout


def test_diff_json_and_terminal_carry_the_test_and_each_runs_noise(tmp_path):
    rng = np.random.default_rng(5)
    a = synthetic_run(rng, noise=0.02, machine=0.01, outliers=0)
    b = synthetic_run(rng, scale={"attention": 1.3}, noise=0.02, machine=0.01, outliers=0)
    quiet = compare(a, b, "a", "b")
    assert quiet.flags_trusted and not quiet.noise_b.noisy  # TTFT spread under 10%, no readings: trusted
    b.contention = {"window_s": 1.0, "cpus": 2, "load1": 0.5, "own_cpus": 1.0, "nivcsw": 10,
                    "others_busy_share": 0.61, "steal_share": 0.0}
    save_run(a, tmp_path / "a")
    save_run(b, tmp_path / "b")
    data = json.loads(cli("diff", str(tmp_path / "a"), str(tmp_path / "b"), "--json").stdout)
    assert data["test"]["method"] == "Mann-Whitney U, two-sided, Holm" and data["test"]["tests"] == 7
    assert data["test"]["level"] == 0.05 and data["test"]["can_flag"]
    assert {"p_value", "p_holm", "flagged"} <= set(data["components"][0])
    assert not data["noise"]["a"]["noisy"] and data["noise"]["b"]["noisy"]
    assert data["flags_trusted"] is False  # the test sees noise within each run, not drift between them
    shown = cli("diff", str(tmp_path / "a"), str(tmp_path / "b")).stdout
    assert "no component changed beyond the noise of its repeats; 1 more differ beyond their repeats' noise but " \
           "a run is noisy" in shown
    assert not any(row["flagged"] for row in data["components"])  # a noisy run flags nothing
    assert [row["component"] for row in data["components"] if row["significant"]] == ["attention", "ttft"]
    assert "changed?" in shown
    assert "Holm-corrected over 7 rows at 5% family-wise" in shown
    assert "run B is noisy, do not trust small differences: other processes used 61% of the CPUs" in shown
