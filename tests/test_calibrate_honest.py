"""Ceilings measured honestly: calibrate refuses a busy machine and unsettled numbers, copies beyond the
last-level cache, and the cache is keyed by device, thread count and dtypes.

A fake source stands in for torch: it returns scripted seconds per call, so the rates are worked out
here by hand (2·n³ FLOPs per n×n matmul, 2 × buffer bytes per copy) and no test waits on a real matmul.
"""
from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from analyzers.cost import ceilings as cache
from analyzers.cost.ceilings import Ceilings
from analyzers.jsonout import dumps
from profiler import calibrate as cal
from tests.conftest import cli

MiB = 2**20


class FakeSource:
    """Scripted seconds per call for each batch of each measurement."""

    kind = "cpu"

    def __init__(self, matmul: dict[int, list[float]], copy: list[float], cache_bytes: int = MiB, threads: int = 4):
        self.matmul_seconds, self.copy_seconds = matmul, copy
        self.cache, self.nthreads = cache_bytes, threads
        self.copied: list[int] = []

    def matmul(self, dtype, n):
        return iter(self.matmul_seconds[n]).__next__

    def copy(self, nbytes):
        self.copied.append(nbytes)
        return iter(self.copy_seconds).__next__

    def cache_bytes(self):
        return self.cache, "fake"

    def threads(self):
        return self.nthreads

    def version(self):
        return "fake"


@pytest.fixture(autouse=True)
def small_plan(monkeypatch):
    """Two matmul sizes, one dtype, one copy of 4x the (fake, 1 MiB) cache; a quiet 2-CPU machine."""
    monkeypatch.setitem(cal.MATMUL_SIZES, "cpu", (100, 200))
    monkeypatch.setitem(cal.DTYPES, "cpu", ("float32",))
    monkeypatch.setitem(cal.CACHE_MULTIPLES, "cpu", (4,))
    monkeypatch.setattr(cal, "usable_cpus", lambda: 2)
    monkeypatch.setattr(cal, "load_average", lambda: 0.5)


def stable() -> FakeSource:
    # n=100: fastest 0.002 s -> 2e6 / 0.002 = 1e9 FLOP/s; n=200: 1.6e7 / 0.0128 = 1.25e9 FLOP/s (the peak)
    # copy of 4 MiB: 2 * 4 MiB / 0.001 s = 8.388608e9 B/s; each three batches within 2.5%
    return FakeSource({100: [0.00205, 0.002, 0.00201], 200: [0.0128, 0.013, 0.0129]}, [0.001, 0.00102, 0.00101])


def test_stable_measurements_give_the_fastest_rates():
    source = stable()
    ceilings = cal.calibrate("cpu", "fake cpu (2 cores, 4 threads)", source=source)
    assert ceilings.flops_per_s == {"float32": pytest.approx(1.25e9)}
    assert ceilings.details["matmul_flops_per_s"]["float32"]["100"] == pytest.approx(1e9)
    assert ceilings.bytes_per_s == pytest.approx(8 * MiB / 0.001)
    assert source.copied == [4 * MiB]  # 4x the last-level cache, nothing that fits in it
    assert ceilings.details["threads"] == 4 and ceilings.details["load1"] == 0.5
    # the widest of the agreeing threes: 0.00205 vs 0.002 at n=100 (n=200: 1.6%, the copy: 2%)
    assert ceilings.details["settled"]["worst_spread"] == pytest.approx(0.00005 / 0.002)


def test_unstable_measurements_are_refused():
    # ten batches, each 10% slower than the one before: the three fastest are 20% apart
    drifting = [0.002 * (1 + 0.1 * i) for i in range(10)]
    source = FakeSource({100: drifting, 200: drifting}, [0.001] * 3)
    with pytest.raises(cal.CalibrationRefused) as info:
        cal.calibrate("cpu", "fake cpu", source=source)
    message = str(info.value)
    assert "float32 100x100 matmul did not settle" in message and "3 fastest of 10 batches were 20% apart" in message
    assert "nothing was saved" in message
    assert source.copied == []  # refused at the first unsettled measurement, not after all of them


def test_a_busy_machine_is_refused_before_anything_is_measured():
    source = stable()
    with pytest.raises(cal.CalibrationRefused, match=r"load average is 2\.5 on 2 CPUs.*nothing was saved"):
        cal.calibrate("cpu", "fake cpu", source=source, load=lambda: 2.5)
    assert source.copied == []
    # at the CPU count exactly, other work can still have a CPU each: allowed
    assert cal.calibrate("cpu", "fake cpu", source=stable(), load=lambda: 2.0).bytes_per_s > 0


def test_too_slow_to_judge_is_refused(monkeypatch):
    clock = iter(range(0, 1000, 5)).__next__  # every batch takes 5 s of an 8 s budget
    monkeypatch.setattr(cal, "now", clock)
    with pytest.raises(cal.CalibrationRefused, match=r"only 2 batch\(es\) fit in 8 s"):
        cal.calibrate("cpu", "fake cpu", source=stable())


def _use_fake(monkeypatch, source: FakeSource, load: float = 0.5):
    monkeypatch.setattr(cal, "TorchSource", lambda device: source)
    monkeypatch.setattr(cal, "load_average", lambda: load)


def test_cli_refuses_in_one_sentence_and_saves_nothing(monkeypatch):
    _use_fake(monkeypatch, stable(), load=9.0)
    out = cli("calibrate")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "load average is 9.0 on 2 CPUs" in out.stderr and out.stderr.strip().count("\n") == 0
    assert not cache.cache_path().exists()


def test_cli_saves_under_device_threads_and_dtypes(monkeypatch):
    from profiler.device import describe

    _use_fake(monkeypatch, stable())
    out = cli("calibrate")
    assert out.returncode == 0, out.stderr
    assert "4 MiB" in out.stdout and "DRAM" in out.stdout and "does not fit in cache" in out.stdout
    data = json.loads(cache.cache_path().read_text())
    name = describe("cpu").name
    assert data["format"] == 2 and list(data["entries"]) == [f"{name} | 4 threads | float32"]
    chosen, _ = cache.choose(name, on_gpu=False)
    assert chosen.flops_per_s["float32"] == pytest.approx(1.25e9)


def toy(threads, dtypes=("float32",), at="2026-01-01T00:00:00+00:00") -> Ceilings:
    return Ceilings("toy cpu", {d: 1e11 for d in dtypes}, 1e10, "calibrated test",
                    {"threads": threads, "measured_at": at})


def test_a_different_thread_count_is_not_chosen():
    cache.save_calibrated(toy(4))
    assert cache.choose("toy cpu", on_gpu=False, threads=4)[0] == toy(4)
    chosen, why = cache.choose("toy cpu", on_gpu=False, threads=8)
    assert chosen is None and "ttft-profile calibrate" in why
    # a dtype the calibration did not measure is not claimed either
    assert cache.choose("toy cpu", on_gpu=False, threads=4, dtype="bfloat16")[0] is None
    # both counts saved: each run gets its own
    cache.save_calibrated(Ceilings("toy cpu", {"float32": 4e11}, 1e10, "calibrated test", {"threads": 16}))
    assert cache.load_calibrated("toy cpu", threads=16).flops_per_s["float32"] == 4e11
    assert cache.load_calibrated("toy cpu", threads=4).flops_per_s["float32"] == 1e11


def test_the_newest_calibration_of_the_same_key_wins():
    cache.save_calibrated(toy(4, at="2026-01-01T00:00:00+00:00"))
    newer = Ceilings("toy cpu", {"float32": 3e11}, 1e10, "calibrated newer",
                     {"threads": 4, "measured_at": "2026-02-01T00:00:00+00:00"})
    cache.save_calibrated(newer)
    assert len(cache.read_cache().entries) == 1  # same device, threads and dtypes: one entry, replaced
    assert cache.load_calibrated("toy cpu", threads=4) == newer


def test_an_older_format_cache_is_ignored_said_and_replaced(monkeypatch):
    old = {"toy cpu": toy(None).to_dict()}  # version 1: {device_name: ceilings}, no key, no checks
    cache.cache_path().parent.mkdir(parents=True, exist_ok=True)
    cache.cache_path().write_text(json.dumps(old))
    assert cache.load_calibrated("toy cpu") is None
    chosen, why = cache.choose("toy cpu", on_gpu=False)
    assert chosen is None and "older format (1 entry" in why and "run `ttft-profile calibrate` again" in why
    _use_fake(monkeypatch, stable())
    out = cli("calibrate")
    assert out.returncode == 0 and "replaced 1 cache entry in an older format" in out.stdout
    assert cache.read_cache().stale == 0 and "toy cpu" not in cache.cache_path().read_text()


def test_last_level_cache_from_sysfs(tmp_path, monkeypatch):
    monkeypatch.setitem(cal.CACHE_MULTIPLES, "cpu", (4, 8))  # as shipped, not small_plan's
    for i, (level, size) in enumerate([(1, "32K"), (1, "32K"), (2, "1024K"), (3, "32768K")]):
        (tmp_path / f"index{i}").mkdir()
        (tmp_path / f"index{i}" / "level").write_text(f"{level}\n")
        (tmp_path / f"index{i}" / "size").write_text(f"{size}\n")
    size, where = cal.last_level_cache(tmp_path)
    assert size == 32 * MiB and where.endswith("index3/size")
    # copies of 4x and 8x a 32 MiB L3: 128 and 256 MiB buffers
    assert cal.copy_sizes("cpu", size) == [128 * MiB, 256 * MiB]
    # nothing readable: sizes from a cache larger than any current one, not from nothing
    assert cal.copy_sizes("cpu", None) == [4 * cal.UNKNOWN_CACHE_BYTES, 8 * cal.UNKNOWN_CACHE_BYTES]


# --- no efficiency above 1 without a warning -------------------------------------------------------------


def low_ceiling_run(peak: float, bandwidth: float):
    """The two-of-four-layer tiny-llama run of test_numbers_doc (mlp 13 ms, lm_head 1 ms, norm 0.5 ms in its
    median repeat), with the ceilings given; and the FLOPs and bytes its roofline counts per component."""
    from analyzers.tables import compute_tables
    from tests.test_numbers_doc import synthetic_run

    run = synthetic_run()
    counts = compute_tables(run).roofline.set_index("component")[["flops", "bytes"]]
    run.ceilings = Ceilings("test device", {"float32": peak}, bandwidth, "calibrated 2026-11-30").to_dict()
    return run, counts


def test_a_compute_ceiling_below_the_run_is_named_everywhere(tmp_path):
    from rich.console import Console

    from analyzers.render.summary import run_json
    from analyzers.render.terminal import render_run
    from analyzers.store import save_run
    from analyzers.tables import compute_tables

    mlp_flops = 2 * 3 * 2 * 16 * 256 * 768  # 2 layers x 3 matmuls x 2 FLOPs x 16 tokens x hidden 256 x inter 768
    run, counts = low_ceiling_run(peak=mlp_flops / 19.5e-3, bandwidth=1e15)  # mlp's floor: 19.5 ms for 13 ms
    assert counts.loc["mlp", "flops"] == mlp_flops
    tables = compute_tables(run)
    roof = tables.roofline.set_index("component")
    # efficiency = (flops / peak) / measured: mlp 19.5 / 13 = 1.5; lm_head 19.5 x 2097152 / 37748736 / 1 = 1.083
    assert roof.loc["mlp", "efficiency"] == pytest.approx(1.5)
    assert roof.loc["lm_head", "efficiency"] == pytest.approx(19.5 * counts.loc["lm_head", "flops"] / mlp_flops)
    assert set(roof.index[roof["efficiency_warning"]]) == {"mlp", "lm_head"}
    warning = ("warning: eff 1.50 > 1 (mlp 1.50, lm_head 1.08): the compute ceiling 'calibrated 2026-11-30' "
               "(0.00194 TFLOP/s float32) is below what this run achieved")
    assert tables.roofline_note.startswith(warning) and "ttft-profile calibrate` on a quiet machine" in tables.roofline_note
    out = io.StringIO()
    render_run(tables, Console(file=out, width=250))
    printed = out.getvalue()
    assert warning in printed
    mlp_line = next(line for line in printed.splitlines() if line.lstrip("│ ").startswith("mlp"))
    assert ">100%!" in mlp_line and "150%" not in printed
    data = json.loads(dumps(run_json(tables)))
    flags = {r["component"]: r["efficiency_warning"] for r in data["roofline"]}
    assert flags["mlp"] and flags["lm_head"] and not flags["norm"]
    assert any(n.startswith(warning) for n in data["notices"])
    save_run(run, tmp_path, tables)
    csv = pd.read_csv(tmp_path / "roofline.csv").set_index("component")
    assert csv.loc["mlp", "efficiency_warning"] and not csv.loc["embedding", "efficiency_warning"]


def test_a_memory_ceiling_below_the_run_says_the_bytes_may_have_stayed_in_cache():
    from analyzers.tables import compute_tables

    run, counts = low_ceiling_run(peak=1e18, bandwidth=counts_norm_bandwidth())
    tables = compute_tables(run)
    # efficiency = bytes / bandwidth / measured: norm 2.0 by construction, mlp and lm_head by the same rule
    measured = {"norm": 0.5e-3, "mlp": 13e-3, "lm_head": 1e-3}
    expected = {c: counts.loc[c, "bytes"] / counts_norm_bandwidth() / s for c, s in measured.items()}
    roof = tables.roofline.set_index("component")
    for component, eff in expected.items():
        assert roof.loc[component, "efficiency"] == pytest.approx(eff) and eff > 1
    assert set(roof.index[roof["efficiency_warning"]]) == set(expected)
    note = tables.roofline_note
    assert note.startswith("warning: eff ") and "the memory ceiling 'calibrated 2026-11-30'" in note
    assert "may have stayed in cache" in note


def counts_norm_bandwidth() -> float:
    # tiny-llama's norms at 16 tokens move 168,960 bytes; at this bandwidth they take 1 ms, twice their 0.5 ms
    return 168960 / 1e-3


def test_honest_ceilings_print_no_warning():
    from analyzers.tables import compute_tables
    from tests.test_numbers_doc import synthetic_run

    tables = compute_tables(synthetic_run())  # 100 GFLOP/s and 10 GB/s: every efficiency under 0.5
    assert not tables.roofline["efficiency_warning"].any() and tables.roofline_note is None
