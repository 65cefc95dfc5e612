"""The project's figures for each shared trace against figures and classes worked out without it.

`tests/data/external_expectations.json` holds, per trace, what `tests/data/count_external.py`
(json + gzip only) counted, and for the 20 kernels with the most time the class judged by
hand from the name and the CPU ops around its launch, with the reason. Here the loader,
linker and classifier must reproduce them: kernel count and unlinked count exactly, kernel
milliseconds to 1e-6, every launch of each top kernel in the judged class.
"""
from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from analyzers.trace.classify import KERNEL_CLASSES
from analyzers.trace.link import link
from analyzers.trace.load import load_trace
from tests.conftest import SHARED_TRACES

EXPECTED = json.loads((Path(__file__).parent / "data" / "external_expectations.json").read_text())["traces"]
REL = 1e-6


@lru_cache(maxsize=None)
def device(name: str):
    path = SHARED_TRACES / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared external traces are not checked out next to the project")
    return link(load_trace(path)).device


def kernels(name: str):
    dev = device(name)
    return dev[dev["cat"].astype(str).str.lower().eq("kernel").to_numpy()]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_kernel_totals_match_the_independent_count(name: str) -> None:
    want, dev, got = EXPECTED[name], device(name), kernels(name)
    assert len(got) == want["kernels"]
    assert got["dur_us"].sum() / 1e3 == pytest.approx(want["kernel_ms"], rel=REL, abs=1e-9)
    assert int((~got["linked"].to_numpy(dtype=bool)).sum()) == want["unlinked_kernels"]
    cats = dev["cat"].astype(str).str.lower()
    memcpy = dev.loc[cats.isin(["gpu_memcpy", "memcpy"]).to_numpy(), "dur_us"].sum() / 1e3
    memset = dev.loc[cats.isin(["gpu_memset", "memset"]).to_numpy(), "dur_us"].sum() / 1e3
    assert memcpy == pytest.approx(want["memcpy_ms"], rel=REL, abs=1e-9)
    assert memset == pytest.approx(want["memset_ms"], rel=REL, abs=1e-9)


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if EXPECTED[n]["top"]))
def test_top_kernels_are_the_expected_ones(name: str) -> None:
    got = kernels(name)
    per_name = got.groupby(got["name"].astype(str))["dur_us"].agg(["sum", "count"])
    top = per_name.sort_values("sum", ascending=False).head(len(EXPECTED[name]["top"]))
    assert set(top.index) == {k["name"] for k in EXPECTED[name]["top"]}
    for kernel in EXPECTED[name]["top"]:
        assert per_name.loc[kernel["name"], "sum"] / 1e3 == pytest.approx(kernel["ms"], rel=REL), kernel["name"]
        assert per_name.loc[kernel["name"], "count"] == kernel["count"], kernel["name"]


def _cases() -> list[tuple[str, int]]:
    return [(name, i) for name in sorted(EXPECTED) for i in range(len(EXPECTED[name]["top"]))]


@pytest.mark.parametrize(("name", "rank"), _cases(), ids=[f"{n.split('.')[0]}-{i}" for n, i in _cases()])
def test_top_kernel_has_the_judged_class(name: str, rank: int) -> None:
    kernel = EXPECTED[name]["top"][rank]
    got = kernels(name)
    classes = Counter(got.loc[got["name"].astype(str).eq(kernel["name"]).to_numpy(), "kernel_class"])
    judged = kernel["class"]
    expected = Counter(judged) if isinstance(judged, dict) else Counter({judged: kernel["count"]})
    assert set(expected) <= set(KERNEL_CLASSES)
    assert classes == expected, f"{kernel['name'][:80]}: {kernel['reason']}"
