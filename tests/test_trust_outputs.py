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


def test_a_float32_gpu_run_in_tf32_is_held_to_the_tf32_peak():
    import dataclasses

    from analyzers.cost.ceilings import from_datasheet
    from analyzers.cost.hardware import gpu_by_key
    from analyzers.cost.roofline import matmul_dtype
    from tests.test_breakdown import make_run

    ceilings = from_datasheet(gpu_by_key("a100-80gb"))
    base = dataclasses.replace(make_run([1_000_000], []), dtype="float32", device="cuda:0")
    assert matmul_dtype(base, ceilings) == ("float32", None)  # nothing recorded: IEEE fp32
    tf32 = dataclasses.replace(base, precision={"float32_matmul": "tf32"})
    dtype, note = matmul_dtype(tf32, ceilings)
    # the A100 datasheet: 19.5 TFLOP/s fp32, 156 TFLOP/s TF32 (dense)
    assert dtype == "tf32" and ceilings.peak_flops("tf32") == 156e12 and "TF32" in note
    assert matmul_dtype(dataclasses.replace(tf32, device="cpu"), ceilings)[0] == "float32"
