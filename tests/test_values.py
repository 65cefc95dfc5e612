"""Every value is checked where it enters: a hostile flag, config field, cached config or calibration
entry is one sentence naming it (exit 2 through the CLI), never a traceback and never a silent wrong result."""
from __future__ import annotations

import json
import math

import pytest

from analyzers.errors import InputError, ParameterError
from tests.conftest import cli

PROFILE = ["--model", "tiny-llama", "--device", "cpu", "--len", "16", "--warmup", "0", "--repeat", "1", "--no-trace"]
PREDICT = ["predict", "--model", "tiny-llama", "--gpu", "h200", "--len", "16"]

FLAG_CASES = [
    (PROFILE + ["--seed", "-1"], "--seed"),
    (PROFILE + ["--seed", str(2**63)], "--seed"),
    (PROFILE + ["--seed", "99999999999999999999999"], "--seed"),
    (PROFILE + ["--len", str(10**12)], "--len"),
    (PROFILE + ["--len", "99999999k"], "--len"),
    (PROFILE + ["--nvml-interval-ms", "nan"], "--nvml-interval-ms"),
    (PROFILE + ["--nvml-interval-ms", "inf"], "--nvml-interval-ms"),
    (PROFILE + ["--nvml-interval-ms", "-inf"], "--nvml-interval-ms"),
    (PROFILE + ["--nvml-interval-ms", "1e9"], "--nvml-interval-ms"),
    (PROFILE + ["--temperature", "nan"], "--temperature"),
    (PROFILE + ["--temperature", "inf"], "--temperature"),
    (PROFILE + ["--top-p", "nan"], "--top-p"),
    (PROFILE + ["--top-p", "inf"], "--top-p"),
    (PROFILE + ["--repeat", str(10**22)], "--repeat"),
    (PROFILE + ["--warmup", str(10**12)], "--warmup"),
    (PROFILE + ["--batch", str(10**13)], "--batch"),
    (PROFILE + ["--layers", str(10**30)], "--layers"),
    (["sweep", *PROFILE[:4], "--len", f"1k..{2**40}"], "--len"),
    (PREDICT + ["--efficiency", "nan"], "--efficiency"),
    (PREDICT + ["--efficiency", "inf"], "--efficiency"),
    (PREDICT + ["--batch", str(10**20)], "--batch"),
    (["predict", "--model", "tiny-llama", "--gpu", "h200", "--len", str(10**12)], "--len"),
]

BASE = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096, "max_position_embeddings": 32768}

CONFIG_CASES = [
    ({"num_hidden_layers": 1e300}, "num_hidden_layers"),
    ({"num_hidden_layers": 10**9}, "num_hidden_layers"),
    ({"hidden_size": 4096.5}, "hidden_size"),
    ({"hidden_size": 250}, "hidden_size"),  # 4 heads do not divide it and no head_dim is given
    ({"hidden_size": 0}, "hidden_size"),
    ({"vocab_size": -5}, "vocab_size"),
    ({"num_attention_heads": True}, "num_attention_heads"),
    ({"intermediate_size": "768"}, "intermediate_size"),
    ({"num_key_value_heads": 0}, "num_key_value_heads"),
    ({"vocab_size": 10**12}, "vocab_size"),
    ({"head_dim": float("nan")}, "head_dim"),
]


def _no_traceback(result) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ttft-profile: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("argv", "flag"), FLAG_CASES, ids=[" ".join(a[-2:]) for a, _ in FLAG_CASES])
def test_a_hostile_flag_is_one_sentence_naming_it(argv, flag):
    result = cli(*argv)
    _no_traceback(result)
    assert flag in result.stderr


def _folder(tmp_path, config):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(("change", "field"), CONFIG_CASES, ids=[f for _, f in CONFIG_CASES])
@pytest.mark.parametrize("command", ["predict", "profile"])
def test_a_hostile_config_field_is_one_sentence_naming_it(tmp_path, change, field, command):
    folder = _folder(tmp_path, {**BASE, **change})
    if command == "predict":
        result = cli("predict", "--model", str(folder), "--gpu", "h200", "--len", "16")
    else:
        result = cli("--model", str(folder), "--device", "cpu", "--len", "16", "--repeat", "1", "--no-trace",
                     "--out", str(tmp_path / "run"))
    _no_traceback(result)
    assert field in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("change", "field"), CONFIG_CASES, ids=[f for _, f in CONFIG_CASES])
def test_model_spec_refuses_the_same_fields(change, field):
    from analyzers.cost.model_spec import ModelSpec, SpecError

    with pytest.raises(SpecError, match=field):
        ModelSpec.from_config({**BASE, **change})


def test_a_config_with_head_dim_need_not_divide():
    from analyzers.cost.model_spec import ModelSpec

    assert ModelSpec.from_config({**BASE, "hidden_size": 250, "head_dim": 64}).head_dim == 64


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"a string"', ""])
def test_a_local_config_that_is_not_an_object_names_the_file(tmp_path, text):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    result = cli("predict", "--model", str(folder), "--gpu", "h200", "--len", "16")
    _no_traceback(result)
    assert str(folder / "config.json") in result.stderr


def test_an_unreadable_config_names_the_file(tmp_path):
    folder = tmp_path / "model"
    (folder / "config.json").mkdir(parents=True)  # tests run as root: a folder is what cannot be read
    result = cli("predict", "--model", str(folder), "--gpu", "h200", "--len", "16")
    _no_traceback(result)
    assert str(folder / "config.json") in result.stderr


def _cached(hub, repo: str, text: str):
    """A Hugging Face cache entry as huggingface_hub lays it out."""
    root = hub / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("abc123")
    (snapshot / "config.json").write_text(text)
    return snapshot / "config.json"


@pytest.mark.parametrize("text", ["{broken", "[]", "3", "null"], ids=["not-json", "list", "number", "null"])
def test_a_cached_hub_config_that_is_not_an_object_names_the_file(hermetic, text):
    path = _cached(hermetic / "cache" / "huggingface" / "hub", "acme/broken-lm", text)
    result = cli("predict", "--model", "acme/broken-lm", "--gpu", "h200", "--len", "16")
    _no_traceback(result)
    assert str(path) in result.stderr


GOOD = {"device_name": "cpu-x", "flops_per_s": {"float32": 1e11}, "bytes_per_s": 2e10, "source": "calibrated",
        "details": {"threads": 2}}
BAD_ENTRIES = [
    {**GOOD, "flops_per_s": {"float32": "1e11"}},
    {**GOOD, "flops_per_s": {"float32": math.nan}},
    {**GOOD, "bytes_per_s": 0},
    {**GOOD, "bytes_per_s": -3e9},
    {**GOOD, "flops_per_s": {"float32": math.inf}},
    {**GOOD, "bytes_per_s": "fast"},
    {**GOOD, "flops_per_s": {}},
    {**GOOD, "flops_per_s": {"float32": True}},
    "not an entry",
]


@pytest.mark.parametrize("entry", BAD_ENTRIES, ids=[str(i) for i in range(len(BAD_ENTRIES))])
def test_a_calibration_entry_with_unusable_rates_is_ignored_with_a_note(entry):
    from analyzers.cost import ceilings

    path = ceilings.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # json.dumps writes NaN and Infinity, which json.loads reads back: exactly what a hand edit can leave
    path.write_text(json.dumps({"format": ceilings.CACHE_FORMAT, "entries": {"k": entry}}))
    assert ceilings.load_calibrated("cpu-x", 2, "float32") is None
    note = ceilings.stale_note()
    assert note is not None and "ignored" in note and str(path) in note


def test_a_good_calibration_entry_is_still_used():
    from analyzers.cost import ceilings

    path = ceilings.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": ceilings.CACHE_FORMAT, "entries": {"k": GOOD, "bad": BAD_ENTRIES[1]}}))
    assert ceilings.load_calibrated("cpu-x", 2, "float32").bytes_per_s == 2e10


SETTINGS_CASES = [
    ({"seed": -1}, "seed"), ({"seed": 2**63}, "seed"), ({"temperature": math.nan}, "temperature"),
    ({"temperature": "0.5"}, "temperature"), ({"top_p": math.nan}, "top_p"),
    ({"telemetry_interval_ms": math.inf}, "telemetry_interval_ms"), ({"seq_lens": (2**40,)}, "seq_len"),
    ({"batch": True}, "batch"), ({"layers": 2.5}, "layers"), ({"allow_pickle": "yes"}, "allow_pickle"),
]


@pytest.mark.parametrize(("kwargs", "name"), SETTINGS_CASES, ids=[n for _, n in SETTINGS_CASES])
def test_settings_refuse_a_hostile_value_by_name(kwargs, name):
    from profiler.settings import Settings

    with pytest.raises(ParameterError) as caught:
        Settings(**kwargs)
    assert caught.value.parameter == name


def test_the_length_grammar_states_its_bound():
    from analyzers.lengths import MAX_TOKENS, parse_lengths, token_count

    assert token_count(str(MAX_TOKENS)) == MAX_TOKENS
    with pytest.raises(InputError, match="above"):
        token_count(str(MAX_TOKENS + 1))
    with pytest.raises(InputError, match="above"):
        parse_lengths(f"1k..{2**40}")
