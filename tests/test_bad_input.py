"""Realistic user mistakes, each one sentence and exit code 2, never a traceback; JSON out is strict."""
from __future__ import annotations

import json

import pytest

from analyzers.store import save_run
from tests.conftest import cli


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def _one_sentence(result, needle: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ttft-profile: error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr


def _folder(tmp_path, name: str, config) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def test_config_that_is_not_an_object(tmp_path):
    _one_sentence(cli("--model", _folder(tmp_path, "m", [1, 2]), "--out", str(tmp_path / "r")), "not a config")


def test_config_missing_a_field_is_named_before_building(tmp_path):
    config = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100}
    _one_sentence(cli("--model", _folder(tmp_path, "m", config), "--out", str(tmp_path / "r")), "hidden_size")


def test_corrupt_weights(tmp_path):
    from profiler.catalog import builtin_entry

    folder = _folder(tmp_path, "m", builtin_entry("tiny-llama")["config"])
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    _one_sentence(cli("--model", folder, "--len", "16", "--out", str(tmp_path / "r")), "could not be loaded")
    assert not (tmp_path / "r").exists()


def test_paged_attention_is_not_offered():
    _one_sentence(cli("--attn", "paged|eager", "--len", "16"), "not an attention implementation")


@pytest.mark.parametrize("content,needle", [("[]", "not a ttft-profile run"),
                                            ('{"schema": "ttft-profile/run", "schema_version": 1}', "lacks required"),
                                            (None, "no TTFT samples")])
def test_broken_run_folders(tmp_path, content, needle):
    folder = tmp_path / "run"
    folder.mkdir()
    if content is None:
        from tests.test_breakdown import make_run

        save_run(make_run([1_000_000], []), folder)
        data = json.loads((folder / "run.json").read_text())
        data["ttft_ns"] = []
        content = json.dumps(data)
    (folder / "run.json").write_text(content)
    for command in (["analyze", str(folder)], ["report", str(folder)], ["diff", str(folder), str(folder)]):
        _one_sentence(cli(*command), needle)


def test_sweep_folder_where_a_run_is_expected(tmp_path):
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    _one_sentence(cli("diff", str(sweep), str(sweep)), "is a sweep folder")


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("")
    _one_sentence(cli("sweep", "--len", "16,32", "--out", str(tmp_path / "afile")), "is a file")


def test_unwritable_calibration_cache(tmp_path):
    (tmp_path / "afile").write_text("")
    result = cli("calibrate", env={"TTFT_PROFILE_CACHE": str(tmp_path / "afile" / "cache")})
    _one_sentence(result, "TTFT_PROFILE_CACHE")


def test_gpu_without_a_peak_for_the_dtype(tmp_path):
    # the V100 has no bf16 tensor cores: asked for explicitly, that is refused before profiling
    _one_sentence(cli("--gpu", "v100", "--dtype", "bfloat16", "--len", "16", "--out", str(tmp_path / "r")),
                  "no bfloat16 peak")


@pytest.mark.parametrize("args,needle", [
    (["--efficiency", "0.5", "--from-run", "x"], "pass one of them"),
    (["--attn", "foo"], "--attn 'foo'"),
])
def test_predict_flag_mistakes(args, needle):
    _one_sentence(cli("predict", "--model", "Qwen/Qwen3-8B", "--len", "1024", "--gpu", "h100-sxm", *args), needle)


def test_predict_from_a_run_without_ceilings(tmp_path):
    from tests.test_breakdown import make_run

    save_run(make_run([1_000_000], []), tmp_path / "r")
    _one_sentence(cli("predict", "--model", "tiny-llama", "--len", "64", "--gpu", "h100-sxm",
                      "--from-run", str(tmp_path / "r")), "recorded no ceilings")


def test_predict_any_length_and_strict_json():
    # ten million tokens of eager attention: more FLOPs than an int64 holds
    result = cli("predict", "--model", "meta-llama/Llama-2-7b-hf", "--len", "10000000", "--gpu", "h100-sxm",
                 "--attn", "eager", "--json")
    assert result.returncode == 0, result.stderr
    data = _strict(result.stdout)  # no NaN or Infinity, although Llama has no qk_norm (0 bytes)
    rows = {row["component"]: row for row in data["components"]}
    assert rows["qk_norm"]["intensity"] is None and rows["attention"]["flops_executed"] > 2**63
    assert "max_position_embeddings" in result.stderr


def test_json_outputs_are_strict(llama_sweep):
    sweep, result = llama_sweep  # sweep --model tiny-llama --len 64,128,256 --no-trace --json
    assert result.returncode == 0, result.stderr
    _strict(result.stdout)
    _strict((sweep / "sweep.json").read_text())
    _strict((sweep / "n64" / "run.json").read_text())
    diff = cli("diff", str(sweep / "n64"), str(sweep / "n256"), "--json")
    _strict(diff.stdout)
