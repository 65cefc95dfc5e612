"""Every test runs against caches of its own: what a user's machine has cached (a calibration, a Hugging Face
snapshot) never changes what a test sees, in this process or in one it starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CACHE_VARS, ORIGINAL_ENV, ROOT, isolate

QWEN = "Qwen/Qwen3-8B"


def _user_default_hub_cache(home: Path) -> Path:
    """Where huggingface_hub looks by default on the user's machine (the environment pytest was started
    with), with their home at `home`. A location set to an absolute path elsewhere is moved under `home`:
    a test never writes into a real cache."""
    env = ORIGINAL_ENV

    def expand(path: str) -> Path:
        return Path(str(home) + path[1:] if path.startswith("~") else path)

    hf_home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    hub = expand(env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(hf_home, "hub"))
    if not hub.is_relative_to(home):
        hub = home / hub.relative_to(hub.anchor)
    return hub


def _fake_snapshot(hub: Path, repo_id: str, config: dict) -> Path:
    """A populated cache entry as huggingface_hub lays it out: refs/main -> snapshots/<sha>/config.json."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    return snapshot


def _resolve_in_a_new_process(env: dict) -> str:
    code = f"from profiler.catalog import resolve\nprint(resolve({QWEN!r}).kind)\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_calibration_cache_is_the_tests_own(hermetic, tmp_path):
    from analyzers.cost.ceilings import cache_path

    assert cache_path().is_relative_to(hermetic)
    assert not cache_path().is_relative_to(tmp_path)  # tests list their tmp_path: the cache is beside it
    # a process the test starts inherits the isolation
    code = "from analyzers.cost.ceilings import cache_path\nprint(cache_path())\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(hermetic)


def test_each_test_gets_empty_caches(hermetic):
    from analyzers.cost.ceilings import cache_path, load_calibrated

    assert not cache_path().exists() and load_calibrated("cpu") is None
    assert os.environ["HF_HUB_OFFLINE"] == "1" and "COLUMNS" not in os.environ


def test_a_populated_user_hf_cache_is_not_what_resolve_returns(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from profiler.catalog import builtin_entry, resolve

    builtin = builtin_entry(QWEN)["config"]
    home = tmp_path / "home"
    user_hub = _user_default_hub_cache(home)
    _fake_snapshot(user_hub, QWEN, dict(builtin, num_hidden_layers=3))

    # The user's machine: their variables and home, and huggingface_hub's default as it computed it on import.
    with monkeypatch.context() as user:
        user.setenv("HOME", str(home))
        for name in CACHE_VARS:
            if name in ORIGINAL_ENV:
                user.setenv(name, ORIGINAL_ENV[name])
            else:
                user.delenv(name, raising=False)
        user.setattr(constants, "HF_HUB_CACHE", str(user_hub))
        assert resolve(QWEN).kind == "hf-cache"  # the fake snapshot is what an unisolated process finds
        user_env = dict(os.environ)

    # What every test runs under (the autouse fixture), over that machine: the fake home stays.
    monkeypatch.setenv("HOME", str(home))
    with monkeypatch.context() as patch:
        patch.setattr(constants, "HF_HUB_CACHE", str(user_hub))  # imported before isolation began
        isolate(patch, tmp_path / "isolated")
        source = resolve(QWEN)
        assert source.kind == "builtin" and source.config == builtin
    source = resolve(QWEN)  # and this test's own isolation, back in place
    assert source.kind == "builtin" and source.config == builtin

    # New processes import huggingface_hub afresh: they find the fake snapshot only without the isolation.
    if user_hub == Path(home, ".cache", "huggingface", "hub"):  # a default a new process computes from HOME
        assert _resolve_in_a_new_process(user_env) == "hf-cache"
    assert _resolve_in_a_new_process(dict(os.environ)) == "builtin"
