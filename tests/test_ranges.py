"""Exclusive time of nested ranges, with a scripted clock and times worked out by hand."""
from __future__ import annotations

import pytest

from analyzers.vocabulary import RangeKey, format_label, parse_label
from profiler.recorders.host import RangeRecorder


def scripted_clock(*ticks):
    it = iter(ticks)
    return lambda: next(it)


def test_exclusive_time_subtracts_nested_ranges():
    # layer range 0..100 holds two mlp calls of 20 ns (10..30) and 5 ns (40..45):
    # layer exclusive = 100 - 25 = 75, mlp = 25 over 2 calls.
    rec = RangeRecorder(clock=scripted_clock(0, 10, 30, 40, 45, 100), nvtx_on=False, record_function_on=False)
    layer, mlp = RangeKey("residual", 0), RangeKey("mlp", 0)
    rec.push(layer)
    rec.push(mlp)
    rec.pop()
    rec.push(mlp)
    rec.pop()
    rec.pop()
    assert rec.take() == {layer: (75, 1), mlp: (25, 2)}


def test_three_levels_only_direct_children_are_subtracted():
    # a: 0..60, b: 5..50, c: 10..20 -> c=10, b=45-10=35, a=60-45=15; sum = 60 = a's span.
    rec = RangeRecorder(clock=scripted_clock(0, 5, 10, 20, 50, 60), nvtx_on=False, record_function_on=False)
    a, b, c = RangeKey("residual", 1), RangeKey("attention", 1), RangeKey("rope", 1)
    rec.push(a)
    rec.push(b)
    rec.push(c)
    rec.pop()
    rec.pop()
    rec.pop()
    times = rec.take()
    assert times == {a: (15, 1), b: (35, 1), c: (10, 1)}
    assert sum(ns for ns, _ in times.values()) == 60


def test_take_resets_and_refuses_open_ranges():
    rec = RangeRecorder(clock=scripted_clock(0, 7, 8), nvtx_on=False, record_function_on=False)
    rec.push(RangeKey("mlp"))
    with pytest.raises(RuntimeError):
        rec.take()
    rec.pop()
    assert rec.take() == {RangeKey("mlp"): (7, 1)}
    assert rec.take() == {}


def test_unwind_closes_ranges_left_open_by_an_exception():
    rec = RangeRecorder(clock=scripted_clock(0, 1, 2, 3), nvtx_on=False, record_function_on=False)
    rec.push(RangeKey("residual", 0))
    rec.push(RangeKey("mlp", 0))
    rec.unwind()
    assert rec.depth == 0


@pytest.mark.parametrize("component,layer,detail,label", [
    ("mlp", 3, None, "ttft/mlp/L3"),
    ("attention", None, "mask", "ttft/attention/mask"),
    ("attention", 12, "mask", "ttft/attention/L12/mask"),
    ("sampling", None, None, "ttft/sampling"),
])
def test_labels_round_trip(component, layer, detail, label):
    assert format_label(component, layer, detail) == label
    assert parse_label(label) == RangeKey(component, layer, detail)


def test_foreign_labels_are_not_ours():
    assert parse_label("## forward ##") is None
    assert parse_label("ttft/not_a_component/L1") is None
