"""Efficiencies above 1 mean a wrong ceiling: they never scale a prediction below its floor."""
from __future__ import annotations

import math

import pandas as pd

from analyzers.cost.predict import efficiencies_from_run


def test_an_impossible_efficiency_does_not_carry_into_a_prediction():
    roof = pd.DataFrame({"component": ["mlp", "attention", "norm"], "efficiency": [1.49, 0.62, math.nan]})
    got = efficiencies_from_run(object(), roof)
    assert got["attention"] == 0.62
    assert math.isnan(got["mlp"]) and math.isnan(got["norm"])
