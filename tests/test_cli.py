"""The command line as a user meets it: its output, its exit code, its files.

In-process through `main()`; one full profile runs in a subprocess, end to end."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import cli, run_cli


def test_json_summary_and_run_folder(tmp_path):
    # end to end on purpose: the installed command in a fresh process, its stdout JSON alone, its files
    out = tmp_path / "run"
    result = run_cli("--model", "tiny-llama", "--len", "128", "--warmup", "1", "--repeat", "3",
                     "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # stdout is JSON alone
    assert summary["model"] == "tiny-llama" and summary["seq_len"] == 128
    assert summary["ttft"]["repeats"] == 3
    total = sum(c["ms"] for c in summary["components"])
    assert total == pytest.approx(summary["ttft"]["p50_ms"], rel=1e-9)
    assert sorted(p.name for p in out.iterdir()) == ["breakdown.csv", "breakdown_layers.csv", "nvml.csv", "run.json",
                                                     "trace.json.gz"]
    csv = pd.read_csv(out / "breakdown.csv")
    assert csv["ms"].sum() == pytest.approx(summary["ttft"]["p50_ms"], rel=1e-4)
    run = json.loads((out / "run.json").read_text())
    assert run["schema_version"] == 1 and len(run["ttft_ns"]) == 3
    assert run["command"][:3] == ["ttft-profile", "--model", "tiny-llama"]


def test_table_output_names_every_component(qwen3_run):
    result = qwen3_run.result  # tiny-qwen3 --len 64 --warmup 0 --repeat 1
    assert result.returncode == 0, result.stderr
    for name in ("embedding", "qkv_proj", "qk_norm", "rope", "attention", "o_proj", "mlp", "lm_head",
                 "sampling", "other", "TTFT (p50)"):
        assert name in result.stdout
    assert "cold TTFT" in result.stdout


def test_llama_table_marks_qk_norm_absent(tmp_path):
    result = cli("--model", "tiny-llama", "--len", "32", "--warmup", "0", "--repeat", "1",
                 "--out", str(tmp_path / "r"))
    line = next(line for line in result.stdout.splitlines() if "qk_norm" in line)
    assert "absent" in line


def test_big_model_in_part_says_so(tmp_path):
    # bfloat16 and no trace: half the 5 GB of float32 embedding and lm_head to fill, one prefill fewer
    result = cli("--model", "Qwen/Qwen3-8B", "--len", "64", "--layers", "2", "--warmup", "0",
                 "--repeat", "1", "--dtype", "bfloat16", "--no-trace", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "random weights" in result.stderr and "2 of 36 layers" in result.stderr
    assert "2 of 36 layers" in result.stdout


def test_models_lists_the_built_ins():
    result = cli("models")
    assert result.returncode == 0
    for name in ("Qwen/Qwen3-8B", "meta-llama/Llama-2-7b-hf", "meta-llama/Meta-Llama-3-8B", "Qwen/Qwen2.5-7B",
                 "mistralai/Mistral-7B-v0.1", "tiny-qwen3"):
        assert name in result.stdout


BAD_INPUT = [
    (["--model", "Qwen/Qwen3-8C"], "Qwen/Qwen3-8B"),
    (["--len", "0"], "--len 0"),
    (["--len", "-5"], "--len -5"),
    (["--model", "Qwen/Qwen3-8B", "--len", "50000", "--layers", "1"], "max_position_embeddings (40960)"),
    (["--model", "Qwen/Qwen3-8B", "--layers", "0"], "outside 1..36"),
    (["--model", "Qwen/Qwen3-8B", "--layers", "37"], "outside 1..36"),
    (["--repeat", "0"], "--repeat 0"),
    (["--dtype", "float8"], "--dtype 'float8'"),
    (["--device", "cuda"], "--device cuda"),
    (["--len", "many"], "not a whole number"),
    (["--bogus"], "unrecognized arguments"),
    (["--attn", "bogus"], "--attn 'bogus' is not an attention implementation"),
    (["--top-p", "2", "--temperature", "1"], "--top-p 2.0"),
    # eager attention at 128K materialises 28 x 131072^2 scores: terabytes
    (["--model", "Qwen/Qwen2.5-7B", "--layers", "1", "--len", "131072", "--attn", "eager"], "needs roughly"),
]


@pytest.mark.parametrize("args,needle", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, args, needle):
    out = tmp_path / "run"
    result = cli(*args, "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ttft-profile: error:")]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no half-written or staging folder


def test_local_folder_without_config(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    result = cli("--model", str(folder), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "no config.json" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("make_out", ["under_a_file", "not_empty"])
def test_unwritable_or_used_out(tmp_path, make_out):
    if make_out == "under_a_file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "run"
        needle = "pass a writable --out"
    else:
        out = tmp_path / "used"
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        needle = "not empty"
    result = cli("--len", "16", "--out", str(out))
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr
    if make_out == "not_empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_long_len_allowed_with_flag_and_warned(tmp_path):
    from profiler.catalog import builtin_entry

    config = dict(builtin_entry("tiny-llama")["config"], max_position_embeddings=64)
    folder = tmp_path / "short-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    refused = cli("--model", str(folder), "--len", "100", "--out", str(tmp_path / "r1"))
    assert refused.returncode == 2 and "--allow-long" in refused.stderr
    allowed = cli("--model", str(folder), "--len", "100", "--allow-long", "--warmup", "0", "--repeat", "1",
                  "--out", str(tmp_path / "r2"), "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert "past max_position_embeddings (64)" in allowed.stderr
    assert json.loads(allowed.stdout)["seq_len"] == 100
