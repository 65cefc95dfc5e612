"""`analyze`'s totals on a trace: kernels, copies and fills apart, unlinked kernels named; and names from a
file cannot reach the terminal as control sequences."""
from __future__ import annotations

import io
import json

from rich.console import Console

from analyzers.render.trace import render_trace, trace_json
from analyzers.trace.report import analyze_trace
from tests.test_trace_external import X, kernel, launch, write_trace


def test_totals_split_by_category_and_unlinked_named(tmp_path):
    events = [*launch(10, 1), *kernel(100, 5, 1, name="gemm_a"),
              *launch(20, 2), *kernel(110, 3, 2, cat="gpu_memcpy", name="Memcpy HtoD"),
              *launch(30, 3), *kernel(120, 2, 3, cat="gpu_memset", name="Memset"),
              # launched before the trace began: its correlation has no launch event
              *kernel(130, 7, 99, name="early_kernel"), *kernel(140, 1, 98, name="early_kernel")]
    data = trace_json(analyze_trace(write_trace(tmp_path, events)))
    # by hand: kernels gemm_a 5 us + early_kernel 7 + 1 us; memcpy 3 us; memset 2 us
    assert (data["kernels"], data["linked_kernels"], data["unlinked_kernels"]) == (3, 1, 2)
    assert data["kernel_ms"] == 0.013 and data["memcpy_ms"] == 0.003 and data["memset_ms"] == 0.002
    assert data["device_ms"] == 0.018
    assert data["unlinked"] == [{"name": "early_kernel", "count": 2, "ms": 0.008}]
    json.dumps(data)  # plain JSON all the way down


def test_control_characters_in_names_never_reach_the_terminal(tmp_path):
    hostile = "k\x1b[2J\x1b]0;owned\x07\rname"
    events = [*launch(10, 1), *kernel(100, 5, 1, name=hostile), X("[bold]ann\x1b[31m", "user_annotation", 1, 1, 5, 20)]
    report = analyze_trace(write_trace(tmp_path, events), top=5)
    out = io.StringIO()
    render_trace(report, Console(file=out, width=200, force_terminal=False))
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "k?[2J?]0;owned??name" in text  # shown, with the controls made visible
    assert "[bold]ann" in text  # markup in a name is shown as text, not applied


def test_analyze_a_folder_of_rank_traces(tmp_path):
    import shutil

    import pytest

    from tests.conftest import SHARED_TRACES, cli

    source = SHARED_TRACES / "v100_ddp_rank0.json.gz"
    if not source.exists():
        pytest.skip(f"{source} is not here (../shared/external-traces ships beside the project)")
    for rank in (0, 1):
        shutil.copy(source, tmp_path / f"trace_rank{rank}.json.gz")
    result = cli("analyze", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    ranks = json.loads(result.stdout)["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["device_ms"] == ranks[1]["device_ms"] and ranks[1]["lag_ms"] == 0.0
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = cli("analyze", str(empty))
    assert refused.returncode == 2 and refused.stderr.count("ttft-profile: error:") == 1


TOTAL_KEYS = ("events", "kernels", "kernel_ms", "memcpy_ms", "memset_ms", "device_ms", "linked_kernels",
              "unlinked_kernels", "unlinked", "steps", "classification_coverage")
SHARED = ("v100_ddp_rank0.json.gz", "a100_alexnet.json.gz", "cpu_only.json.gz",
          "h100_hf_qwen1.5-0.5b_prefill.json.gz", "mi300x_sglang_qwen3-8b_extend.json.gz",
          "mi300x_vllm_gpt-oss_mixed_step.json.gz")


def _shared(name):
    import pytest

    from tests.conftest import SHARED_TRACES

    path = SHARED_TRACES / name
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/external-traces ships beside the project)")
    return path


def test_every_shared_trace_has_the_totals_and_classes_sum_to_device_time():
    import pytest

    from tests.conftest import cli

    for name in SHARED:
        result = cli("analyze", str(_shared(name)), "--json")
        assert result.returncode == 0, (name, result.stderr)
        data = json.loads(result.stdout)
        assert all(key in data for key in TOTAL_KEYS), (name, sorted(data))
        # kernels + copies + fills = all device time; linked + unlinked = all kernels
        assert data["kernel_ms"] + data["memcpy_ms"] + data["memset_ms"] == pytest.approx(data["device_ms"], abs=1e-9)
        assert data["linked_kernels"] + data["unlinked_kernels"] == data["kernels"]
        classes = data["tables"].get("kernel classes", [])
        assert sum(row["ms"] for row in classes) == pytest.approx(data["device_ms"], rel=1e-9, abs=1e-12), name
        coverage = data["classification_coverage"]
        if data["device_ms"]:
            assert sum(coverage[k]["share"] for k in ("op", "name", "none")) == pytest.approx(1.0)


def test_max_trace_mb_refuses_a_bomb_and_admits_it_when_raised(tmp_path):
    import gzip

    from tests.conftest import cli

    bomb = tmp_path / "bomb.json.gz"  # 3 MB of JSON in a few kB
    bomb.write_bytes(gzip.compress(b'{"traceEvents": [' + b" " * (3 * 2**20) + b"]}"))
    refused = cli("analyze", str(bomb), "--max-trace-mb", "1")
    assert refused.returncode == 2 and "--max-trace-mb" in refused.stderr
    admitted = cli("analyze", str(bomb), "--max-trace-mb", "4", "--json")
    assert admitted.returncode == 0, admitted.stderr
    assert json.loads(admitted.stdout)["events"] == 0
    assert cli("analyze", str(bomb), "--max-trace-mb", "0").returncode == 2


def test_a_huge_kernel_name_is_classed_by_its_start():
    from analyzers.trace.classify import NAME_PREFIX, name_class

    real = "Cijk_Alik_Bljk_BBS_BH_Bias_HA_S_SAV_UserArgs_MT256x192x64_MI16x16x1_SN"
    assert name_class(real) == "gemm"
    assert name_class(real + "_x" * NAME_PREFIX) == "gemm"  # 128k characters past the part that is read


def test_max_trace_mb_applies_to_a_rank_folder(tmp_path):
    import gzip

    from tests.conftest import cli

    for rank in (0, 1):
        (tmp_path / f"rank{rank}.json.gz").write_bytes(
            gzip.compress(b'{"traceEvents": [' + b" " * (3 * 2**20) + b"]}"))
    refused = cli("analyze", str(tmp_path), "--max-trace-mb", "1")
    assert refused.returncode == 2 and "--max-trace-mb" in refused.stderr
    assert cli("analyze", str(tmp_path), "--max-trace-mb", "4").returncode == 0
