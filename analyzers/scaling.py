"""How each component's time grows with the prompt length: fits over a sweep.

Projections and norms are linear in the number of tokens n; attention's
score and value products are quadratic. Fitting each component on its own
(rather than the TTFT) keeps the quadratic term where it belongs, and the
linear fit of the TTFT is kept only to show how badly "TTFT = k·n + C"
drifts once attention matters.

A fit is a claim about lengths nobody measured, so it is extrapolated only
when it passes `FIT_RULE` (docs/decisions.md says why this rule and not R²).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzers.errors import InputError
from analyzers.vocabulary import COMPONENTS, TOTAL

FIT_COLUMNS = ["component", "fit", "points", "c0", "c1", "c2", "r2", "max_abs_residual_ms"]
EXTRAPOLATE_COLUMNS = ["component", "seq_len", "ms", "stderr_ms", "extrapolated", "refused_because"]
TOTAL_COLUMNS = ["seq_len", "ms", "stderr_ms", "extrapolated", "refused_because"]
QUADRATIC_COMPONENTS = frozenset({"attention"})
# An extrapolation whose standard error is more than this share of it says next to nothing.
MAX_RELATIVE_STDERR = 0.25
FIT_RULE = ("a fit is extrapolated only when it has at least as many spare lengths as parameters (4 lengths for "
            "a line, 6 for attention's n² fit), predicts more than 0 ms at every extrapolated length, and its "
            f"standard error there is at most {100 * MAX_RELATIVE_STDERR:.0f}% of the prediction")


@dataclass(frozen=True)
class Fit:
    """time_ms(n) = c0 + c1·n + c2·n², least squares over the measured lengths."""

    component: str
    coefficients: tuple[float, float, float]  # c2 is 0.0 for a linear fit
    r2: float  # NaN when the time does not vary at all (nothing to explain)
    residuals: tuple[float, ...]  # measured − fitted, ms, in the order of seq_lens
    # covariance of the fitted parameters (2×2 linear, 3×3 quadratic), NaN when
    # there are no spare points to estimate the residual variance from
    covariance: tuple[tuple[float, ...], ...]
    seq_lens: tuple[int, ...] = ()

    @property
    def quadratic(self) -> bool:
        return len(self.covariance) == 3

    def predict(self, n: float) -> tuple[float, float]:
        """(ms, standard error of that ms) at length n; the error is NaN when the fit had no spare points."""
        x = _design([float(n)], self.quadratic)[0]
        ms = float(x @ np.array(self.coefficients[: len(x)]))
        var = float(x @ np.array(self.covariance) @ x)
        if math.isnan(var):
            return ms, math.nan
        # rounding can leave a variance of -1e-20 where the truth is 0
        return ms, math.sqrt(max(var, 0.0))


def _design(n: Iterable[float], quadratic: bool) -> np.ndarray:
    n = np.asarray(list(n), dtype=float)
    cols = [np.ones_like(n), n] + ([n * n] if quadratic else [])
    return np.column_stack(cols)


def fit_component(seq_lens: Iterable[int], ms: Iterable[float], quadratic: bool, component: str = "") -> Fit:
    """Least squares of ms against n (plus n² when quadratic), with R², residuals and coefficient covariance."""
    n = np.asarray(list(seq_lens), dtype=float)
    y = np.asarray(list(ms), dtype=float)
    params = 3 if quadratic else 2
    name = component or "a component"
    if len(n) != len(y):
        raise InputError(f"{name} has {len(n)} lengths but {len(y)} times; give one time per length.")
    if len(np.unique(n)) < params:
        raise InputError(f"a {'quadratic' if quadratic else 'linear'} fit of {name} needs at least {params} "
                         f"distinct lengths, it got {len(np.unique(n))}; measure more lengths.")
    # n² reaches 1e9 at 32k tokens: solve on n/scale so the columns are of one size,
    # then map the coefficients (and their covariance) back to plain n.
    scale = float(np.max(np.abs(n)))
    unscale = np.array([1.0, 1.0 / scale, 1.0 / scale**2][:params])
    xs = _design(n / scale, quadratic)
    beta_s, *_ = np.linalg.lstsq(xs, y, rcond=None)
    fitted = xs @ beta_s
    resid = y - fitted
    ssr = float(resid @ resid)
    sst = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ssr / sst if sst > 0 else math.nan
    dof = len(n) - params
    if dof > 0:
        cov_s = ssr / dof * np.linalg.inv(xs.T @ xs)
    else:
        # as many points as parameters: the curve passes through every point, and
        # that says nothing about the noise; 0 would claim a certainty we lack
        cov_s = np.full((params, params), math.nan)
    beta = beta_s * unscale
    cov = cov_s * np.outer(unscale, unscale)
    coefficients = (float(beta[0]), float(beta[1]), float(beta[2]) if quadratic else 0.0)
    return Fit(component=component, coefficients=coefficients, r2=r2,
               residuals=tuple(float(r) for r in resid),
               covariance=tuple(tuple(float(v) for v in row) for row in cov),
               seq_lens=tuple(int(v) for v in n))


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    missing = {"seq_len", "component", "ms"} - set(table.columns)
    if missing:
        raise InputError(f"the sweep table lacks column(s) {', '.join(sorted(missing))}; "
                         "give one row per length and component with seq_len, component and ms.")
    table = table[["seq_len", "component", "ms"]].dropna(subset=["ms"])
    dup = table.duplicated(subset=["seq_len", "component"])
    if dup.any():
        first = table[dup].iloc[0]
        raise InputError(f"the sweep table has more than one row for {first['component']} at "
                         f"{int(first['seq_len'])} tokens; give one row per length and component.")
    return table


def _component_order(names: Iterable[str]) -> list[str]:
    rank = {c: i for i, c in enumerate(COMPONENTS)}
    return sorted(set(names), key=lambda c: (c == TOTAL, rank.get(c, len(rank)), c))


def ttft_by_length(table: pd.DataFrame) -> pd.Series:
    """TTFT ms per seq_len: the `ttft` rows if the table has them, else the sum of the components."""
    table = _check_table(table)
    if (table["component"] == TOTAL).any():
        return table[table["component"] == TOTAL].set_index("seq_len")["ms"].sort_index()
    # a breakdown's rows (remainder included) add up to its TTFT
    return table.groupby("seq_len")["ms"].sum().sort_index()


def fit_components(table: pd.DataFrame) -> dict[str, Fit]:
    """A Fit per component (quadratic for attention, linear otherwise) and a linear one of the TTFT.

    Components that are 0 ms at every length (absent from the model) are left
    out. Attention falls back to a linear fit with only two lengths, since a
    quadratic through two points is not determined.
    """
    table = _check_table(table)
    parts = table[table["component"] != TOTAL]
    fits: dict[str, Fit] = {}
    for comp in _component_order(parts["component"]):
        rows = parts[parts["component"] == comp].sort_values("seq_len")
        if not (rows["ms"] != 0).any():
            continue
        quadratic = comp in QUADRATIC_COMPONENTS and rows["seq_len"].nunique() >= 3
        fits[comp] = fit_component(rows["seq_len"], rows["ms"], quadratic, component=comp)
    total = ttft_by_length(table)
    # deliberately linear: the point of this row is to show the residuals of that model
    fits[TOTAL] = fit_component(total.index, total.to_numpy(), quadratic=False, component=TOTAL)
    return fits


def fits_table(fits: Mapping[str, Fit] | Iterable[Fit], refusals: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per Fit: component, fit (linear/quadratic), points, c0, c1, c2, r2, max_abs_residual_ms;
    with `refusals` (component -> `refusal`), also whether it is extrapolated and, if not, why."""
    out = []
    for fit in _fits(fits):
        row = {
            "component": fit.component,
            "fit": "quadratic" if fit.quadratic else "linear",
            "points": len(fit.residuals),
            "c0": fit.coefficients[0],
            "c1": fit.coefficients[1],
            "c2": fit.coefficients[2],
            "r2": fit.r2,
            "max_abs_residual_ms": max((abs(r) for r in fit.residuals), default=0.0),
        }
        if refusals is not None:
            why = refusals.get(fit.component, "")
            row.update(extrapolate=not why, refused_because=why)
        out.append(row)
    columns = FIT_COLUMNS + (["extrapolate", "refused_because"] if refusals is not None else [])
    return pd.DataFrame(out, columns=columns)


def fit_sweep(table: pd.DataFrame) -> pd.DataFrame:
    """Fit every component of a sweep table (seq_len, component, ms) and the TTFT (linear, row `ttft`)."""
    return fits_table(fit_components(table))


def linear_drift(table: pd.DataFrame) -> pd.DataFrame:
    """Per length: measured TTFT, the "TTFT = k·n + C" line, and how far it is off (ms and share)."""
    total = ttft_by_length(table)
    fit = fit_component(total.index, total.to_numpy(), quadratic=False, component=TOTAL)
    linear = [fit.predict(n)[0] for n in total.index]
    return pd.DataFrame({
        "seq_len": total.index.astype(int),
        "ttft_ms": total.to_numpy(),
        "linear_ms": linear,
        "residual_ms": list(fit.residuals),
        "residual_pct": [100 * r / t if t else math.nan for r, t in zip(fit.residuals, total, strict=True)],
    })


def crossover(fit_attention: Fit, fit_mlp: Fit, n_max: float) -> float | None:
    """Smallest n in (0, n_max] where attention's fitted time rises above the MLP's; None if it never does.

    "Overtakes" means crossing from below: if attention is already the larger
    at the shortest lengths there is no crossover to report.
    """
    d0, d1, d2 = (a - m for a, m in zip(fit_attention.coefficients, fit_mlp.coefficients, strict=True))
    roots: list[float] = []
    if d2 == 0:
        if d1 != 0:
            roots.append(-d0 / d1)
    else:
        disc = d1 * d1 - 4 * d2 * d0
        if disc < 0:
            return None
        # the textbook formula loses the small root to cancellation when 4·d2·d0 << d1²
        q = -0.5 * (d1 + math.copysign(math.sqrt(disc), d1))
        roots.append(q / d2)
        if q != 0:
            roots.append(d0 / q)
    for r in sorted(roots):
        slope = d1 + 2 * d2 * r
        if 0 < r <= n_max and slope > 0:  # a touch (slope 0) or a fall back below is not an overtaking
            return float(r)
    return None


def _fits(fits: Mapping[str, Fit] | Iterable[Fit]) -> list[Fit]:
    return list(fits.values()) if isinstance(fits, Mapping) else list(fits)


def _outside(fit: Fit, lengths: Iterable[int]) -> list[int]:
    lo, hi = (min(fit.seq_lens), max(fit.seq_lens)) if fit.seq_lens else (math.inf, -math.inf)
    return sorted(int(n) for n in lengths if not lo <= n <= hi)


def refusal(fit: Fit, lengths: Iterable[int]) -> str:
    """Why `fit` must not be extrapolated to `lengths` (FIT_RULE), or "" when it may.

    Lengths inside the fitted range are interpolation and never refused. The
    verdict covers the fit as a whole: one that goes wrong at 4x is not shown
    at 2x either, since the same coefficients make both numbers.
    """
    outside = _outside(fit, lengths)
    if not outside:
        return ""
    params, points = len(fit.covariance), len(fit.residuals)
    if points - params < params:
        return (f"{points} lengths leave {points - params} spare for its {params} parameters, too few to know its "
                f"error (measure {2 * params} or more lengths)")
    for n in outside:
        ms, _se = fit.predict(n)
        if ms <= 0:
            return f"it goes to {ms:,.3g} ms at {n:,} tokens, and no component takes negative time (R² {fit.r2:.2f})"
    for n in outside:
        ms, se = fit.predict(n)
        if not se <= MAX_RELATIVE_STDERR * ms:  # NaN fails too
            return (f"at {n:,} tokens its standard error is {se:,.3g} ms, {100 * se / ms:.0f}% of its {ms:,.3g} ms "
                    f"(R² {fit.r2:.2f}; more than {100 * MAX_RELATIVE_STDERR:.0f}%)")
    return ""


def extrapolate(fits: Mapping[str, Fit] | Iterable[Fit], lengths: Iterable[int]) -> pd.DataFrame:
    """Predicted ms and its standard error per fit and length; `extrapolated` is True outside the fitted range.

    A fit that fails FIT_RULE at these lengths has no ms (NaN) outside its range, and `refused_because`
    says why: a number that is not shown cannot be misread.
    """
    lengths = list(lengths)
    out = []
    for fit in _fits(fits):
        why = refusal(fit, lengths)
        outside = set(_outside(fit, lengths))
        for n in lengths:
            ms, se = fit.predict(n)
            refused = bool(why) and n in outside
            out.append({"component": fit.component, "seq_len": int(n), "ms": math.nan if refused else ms,
                        "stderr_ms": math.nan if refused else se, "extrapolated": n in outside,
                        "refused_because": why if refused else ""})
    return pd.DataFrame(out, columns=EXTRAPOLATE_COLUMNS)


def _total_refusal(fits: list[Fit], lengths: list[int], sums: list[tuple[float, float]]) -> str:
    """FIT_RULE for a sum of fits: every part with spare lengths and above 0 ms, the sum's error within 25%."""
    few = [f.component for f in fits if len(f.residuals) < 2 * len(f.covariance)]
    if few:
        return (f"{'every component fit' if len(few) == len(fits) else 'the fits of ' + ', '.join(few)} "
                f"{'has' if len(few) == len(fits) else 'have'} too few spare lengths to know the error")
    for n in lengths:
        # a part that goes negative has the wrong shape, and a sum with it in is no time either
        negative = [f.component for f in fits if f.predict(n)[0] <= 0]
        if negative:
            return f"the fits of {', '.join(negative)} go below 0 ms at {n:,} tokens"
    for n, (ms, se) in zip(lengths, sums, strict=True):
        if not (ms > 0 and se <= MAX_RELATIVE_STDERR * ms):
            return (f"at {n:,} tokens the sum's standard error is {se:,.3g} ms, more than "
                    f"{100 * MAX_RELATIVE_STDERR:.0f}% of its {ms:,.3g} ms")
    return ""


def extrapolate_total(fits: Mapping[str, Fit] | Iterable[Fit], lengths: Iterable[int]) -> pd.DataFrame:
    """The TTFT ahead as the sum of the component fits, judged as one fit; NaN ms with the reason when refused.

    Errors add in quadrature, as if the components' fit errors were independent. A part
    whose error alone is too large (a 5 µs copy whose noise swamps its slope) still
    belongs in the sum, with its error counted; the sum is refused when a part has an
    unknown error or goes to 0 ms or below, or when the sum's own error is too large.
    """
    fits, lengths = _fits(fits), sorted(int(n) for n in lengths)
    sums = []
    for n in lengths:
        preds = [f.predict(n) for f in fits]
        sums.append((sum(ms for ms, _ in preds), math.sqrt(sum(se * se for _, se in preds))))
    measured = [n for f in fits for n in f.seq_lens]
    lo, hi = (min(measured), max(measured)) if measured else (math.inf, -math.inf)
    outside = [not lo <= n <= hi for n in lengths]
    why = _total_refusal(fits, [n for n, o in zip(lengths, outside, strict=True) if o],
                         [s for s, o in zip(sums, outside, strict=True) if o]) if any(outside) else ""
    out = []
    for n, (ms, se), ahead in zip(lengths, sums, outside, strict=True):
        refused = bool(why) and ahead
        out.append({"seq_len": n, "ms": math.nan if refused else ms, "stderr_ms": math.nan if refused else se,
                    "extrapolated": ahead, "refused_because": why if refused else ""})
    return pd.DataFrame(out, columns=TOTAL_COLUMNS)
