"""Weights are all there or the run says which are not: a partial safetensors set is refused by name unless
allowed (then the random tensors are named), and a pickle checkpoint is never unpickled unless asked for,
and then only with weights_only=True."""
from __future__ import annotations

import json

import pytest

from analyzers.errors import InputError
from tests.conftest import cli

RUN = ["--device", "cpu", "--len", "16", "--warmup", "0", "--repeat", "1", "--no-trace"]


@pytest.fixture(scope="module")
def state():
    """A tiny model's weights: what a checkpoint on disk would hold."""
    from profiler.build import build
    from profiler.catalog import resolve

    model = build(resolve("tiny-llama"), None, "float32", "cpu", "sdpa", notices=[])
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _folder(tmp_path, name: str = "model"):
    from profiler.catalog import resolve

    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(resolve("tiny-llama").config))
    return folder


def _partial(tmp_path, state, dropped: int):
    from safetensors.torch import save_file

    folder = _folder(tmp_path)
    names = sorted(state)
    kept = {k: state[k] for k in names[dropped:]}
    save_file(kept, str(folder / "model.safetensors"))
    return folder, names[:dropped]


def test_a_partial_safetensors_set_is_refused_naming_the_missing_tensors(tmp_path, state):
    folder, missing = _partial(tmp_path, state, 7)
    result = cli("--model", str(folder), *RUN, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "lack 7 of the model's tensors" in result.stderr
    assert all(name in result.stderr for name in missing[:5]) and "and 2 more" in result.stderr
    assert "--allow-missing-weights" in result.stderr
    assert not (tmp_path / "run").exists()


def test_allowed_missing_tensors_are_named_in_the_notices(tmp_path, state):
    import torch

    from profiler.build import build
    from profiler.catalog import resolve

    folder, missing = _partial(tmp_path, state, 2)
    notices: list[str] = []
    model = build(resolve(str(folder)), None, "float32", "cpu", "sdpa", allow_missing_weights=True, notices=notices)
    assert len(notices) == 1 and "lack 2 tensors" in notices[0]
    assert all(name in notices[0] for name in missing)
    kept = sorted(state)[2]
    assert torch.equal(model.state_dict()[kept], state[kept])  # the rest did load


def test_a_complete_set_loads_without_a_notice(tmp_path, state):
    folder, _ = _partial(tmp_path, state, 0)
    from profiler.build import build
    from profiler.catalog import resolve

    notices: list[str] = []
    build(resolve(str(folder)), None, "float32", "cpu", "sdpa", notices=notices)
    assert notices == []


def test_the_flags_reach_settings():
    from profiler.cli.options import profile_parser, settings_from

    args = profile_parser().parse_args(["--allow-missing-weights", "--allow-pickle"])
    settings = settings_from(args, [16], [])
    assert settings.allow_missing_weights and settings.allow_pickle
    default = settings_from(profile_parser().parse_args([]), [16], [])
    assert not default.allow_missing_weights and not default.allow_pickle


@pytest.fixture
def pickled(tmp_path, state):
    import torch

    folder = _folder(tmp_path)
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def _forbid_load(monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        pytest.fail("torch.load was called without --allow-pickle")

    monkeypatch.setattr(torch, "load", refuse)


def test_a_pickle_checkpoint_is_not_unpickled_by_default(pickled, monkeypatch, tmp_path):
    _forbid_load(monkeypatch)
    result = cli("--model", str(pickled), *RUN, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "pytorch_model.bin not loaded" in result.stderr and "--allow-pickle" in result.stderr
    assert "random weights" in result.stderr


def test_a_pickle_checkpoint_is_loaded_only_with_weights_only(pickled, monkeypatch, state):
    import torch

    from profiler.build import build
    from profiler.catalog import resolve

    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    notices: list[str] = []
    model = build(resolve(str(pickled)), None, "float32", "cpu", "sdpa", allow_pickle=True, notices=notices)
    assert calls == [True]
    assert notices == []
    name = sorted(state)[0]
    assert torch.equal(model.state_dict()[name], state[name])


def test_a_partial_pickle_checkpoint_is_refused_too(tmp_path, state):
    import torch

    from profiler.build import build
    from profiler.catalog import resolve

    folder = _folder(tmp_path)
    names = sorted(state)
    torch.save({k: state[k] for k in names[3:]}, folder / "model.pt")
    with pytest.raises(InputError, match="lack 3 of the model's tensors"):
        build(resolve(str(folder)), None, "float32", "cpu", "sdpa", allow_pickle=True, notices=[])


def test_a_pickle_holding_code_is_refused_in_a_sentence(tmp_path):
    import torch

    from profiler.build import build
    from profiler.catalog import resolve

    folder = _folder(tmp_path)
    torch.save({"w": _Evil()}, folder / "pytorch_model.bin")
    with pytest.raises(InputError, match="weights_only=True"):
        build(resolve(str(folder)), None, "float32", "cpu", "sdpa", allow_pickle=True, notices=[])


class _Evil:
    """An object weights_only refuses to rebuild, as a malicious checkpoint's payload would be."""


def test_allow_missing_weights_from_the_command_line_records_the_random_tensors(tmp_path, state):
    folder, missing = _partial(tmp_path, state, 2)
    result = cli("--model", str(folder), *RUN, "--allow-missing-weights", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    notices = json.loads((tmp_path / "run" / "run.json").read_text())["notices"]
    assert any("lack 2 tensors" in n and all(name in n for name in missing) for n in notices), notices
