"""Every table a run shows, computed once and handed to every output.

The terminal, `--json`, the run folder's CSV files and the HTML report all
show the breakdown, its roofline and the layer estimate; computing them in
one place means they cannot disagree, and a profile computes each once.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace

import pandas as pd

from analyzers.components import breakdown, layer_breakdown, ttft_stats
from analyzers.cost.roofline import run_physical_floor, run_roofline, ttft_floor_ms
from analyzers.errors import InputError
from analyzers.layers import layer_extrapolation, layer_spread
from analyzers.lint import lint
from analyzers.noise import Noise, assess_noise
from analyzers.run import Run
from analyzers.unclaimed import unclaimed_notice


@dataclass(frozen=True)
class RunTables:
    """A run and what every renderer of it needs; None where the run cannot give a table."""

    run: Run
    stats: dict  # analyzers.components.ttft_stats
    breakdown: pd.DataFrame  # analyzers.components.breakdown
    layers: pd.DataFrame  # analyzers.components.layer_breakdown
    roofline: pd.DataFrame | None  # analyzers.cost.roofline.run_roofline
    roofline_note: str | None  # why there is no roofline, or how its ceilings were adjusted
    extrapolation: pd.DataFrame | None  # analyzers.layers.layer_extrapolation, when K < L layers ran
    spread: pd.DataFrame | None  # analyzers.layers.layer_spread, alongside the extrapolation
    noise: Noise | None = None  # analyzers.noise.assess_noise: the run's noise verdict and outlier components
    # analyzers.cost.roofline.run_physical_floor: the whole prefill's physical limit, beside the per-component floor
    physical_floor: dict | None = None
    unclaimed: str | None = None  # analyzers.unclaimed.unclaimed_notice: modules no rule knew, when they matter
    findings: list = field(default_factory=list)  # analyzers.lint.lint: what to fix first, costliest first

    @property
    def floor_ms(self) -> float | None:
        return None if self.roofline is None else ttft_floor_ms(self.roofline)

    @property
    def partial(self) -> bool:
        """Only K of the model's L layers were built."""
        return self.extrapolation is not None

    def __repr__(self) -> str:  # as Run's: the renderers, loaded by name when shown
        return importlib.import_module("analyzers.render.notebook").tables_repr(self)

    def _repr_html_(self) -> str:
        return importlib.import_module("analyzers.render.notebook").tables_html(self)


NO_CEILINGS = ("no roofline: no ceilings for this device; run `ttft-profile calibrate` once, or pass --gpu NAME")


def compute_tables(run: Run) -> RunTables:
    """The one place a run's tables are computed."""
    table = breakdown(run)
    roof, note, physical = None, NO_CEILINGS, None
    if run.ceilings:
        try:
            roof, note = run_roofline(run, table)
            physical = run_physical_floor(run)
        except InputError as exc:  # a config the FLOP model cannot read: keep the run, say why
            roof, note, physical = None, f"no roofline: {exc}", None
    extrapolation = spread = None
    if run.layers_total and 0 < run.layers_built < run.layers_total:
        try:
            extrapolation, spread = layer_extrapolation(run, table), layer_spread(run)
        except InputError:
            extrapolation = spread = None
    tables = RunTables(run=run, stats=ttft_stats(run), breakdown=table, layers=layer_breakdown(run), roofline=roof,
                       roofline_note=note, extrapolation=extrapolation, spread=spread, noise=assess_noise(run),
                       physical_floor=physical, unclaimed=unclaimed_notice(run, table))
    return replace(tables, findings=lint(run, tables))
