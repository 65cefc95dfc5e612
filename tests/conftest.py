"""Shared fixtures: every test isolated from the user's caches, tiny models built once per session,
the CLI in-process (`cli`) and, for the few end-to-end checks, in a subprocess (`run_cli`)."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = ROOT.parent / "shared" / "external-traces"
# The environment as the user started pytest with, before any fixture touched it: what their
# machine's defaults (calibration cache, Hugging Face cache) would be.
ORIGINAL_ENV = dict(os.environ)

# Caches a user's machine may have filled; every test gets its own empty ones instead.
CACHE_VARS = ("TTFT_PROFILE_CACHE", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
# Terminal settings that change what rich prints: a test sees a pipe, as in CI.
TERMINAL_VARS = ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def isolate(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    """Point every cache into `root` (env vars, so subprocesses inherit them) and go offline.

    huggingface_hub reads its cache folder from the environment once, when it is imported,
    so the in-process default (`huggingface_hub.constants.HF_HUB_CACHE`) is patched too.
    Returns the Hugging Face hub cache folder.
    """
    cache = root / "cache"
    hub = cache / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("TTFT_PROFILE_CACHE", str(cache / "ttft-profile"))
    monkeypatch.setenv("HF_HOME", str(cache / "huggingface"))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in TERMINAL_VARS:
        monkeypatch.delenv(name, raising=False)
    try:
        from huggingface_hub import constants
    except ImportError:
        return hub
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub


@pytest.fixture(scope="session")
def _matplotlib_dir(tmp_path_factory) -> Path:
    """One matplotlib config folder for the session: no user matplotlibrc, and its font cache built once."""
    return tmp_path_factory.mktemp("matplotlib")


@pytest.fixture(autouse=True)
def hermetic(monkeypatch, tmp_path_factory, _matplotlib_dir) -> Path:
    """Every test runs against empty caches of its own, under the folder this returns (not inside the
    test's tmp_path, which tests list)."""
    monkeypatch.setenv("MPLCONFIGDIR", str(_matplotlib_dir))
    root = tmp_path_factory.mktemp("env")
    isolate(monkeypatch, root)
    return root


@pytest.fixture(scope="session")
def tiny_model():
    """Build (and cache) a tiny built-in model by name."""
    from profiler.build import build
    from profiler.catalog import resolve

    cache = {}

    def get(name: str = "tiny-qwen3", attn: str = "sdpa"):
        if (name, attn) not in cache:
            cache[(name, attn)] = build(resolve(name), None, "float32", "cpu", attn)
        return cache[(name, attn)]

    return get


class Result(NamedTuple):
    """What a user sees of one command: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> Result:
    """`ttft-profile ARGS` in this process: `profiler.cli.main`, its output captured.

    stdout is not a terminal here, as in a pipe: tables are printed wide enough for every
    column. An exception other than bad input is a bug and propagates with its traceback.
    """
    from profiler.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        if cwd is not None:
            patch.chdir(cwd)
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's --help and friends
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


class SharedRun(NamedTuple):
    """A folder the CLI wrote once for several tests, and what it printed. Read it; copy it to change it."""

    path: Path
    result: Result


def _write_once(tmp_path_factory, name: str, *args: str) -> SharedRun:
    """`ttft-profile ARGS --out FOLDER` in-process, under caches of its own (session fixtures run
    before a test's autouse isolation, so they isolate themselves)."""
    root = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as patch:
        isolate(patch, root / "env")
        result = cli(*args, "--out", str(root / name))
    assert result.returncode == 0, result.stderr
    return SharedRun(root / name, result)


@pytest.fixture(scope="session")
def qwen3_run(tmp_path_factory) -> SharedRun:
    """tiny-qwen3, 64 tokens, one repeat, trace included; its table on stdout."""
    return _write_once(tmp_path_factory, "qwen3-n64", "--model", "tiny-qwen3", "--len", "64", "--warmup", "0",
                       "--repeat", "1")


@pytest.fixture(scope="session")
def llama_sweep(tmp_path_factory) -> SharedRun:
    """A tiny-llama sweep over 64, 128 and 256 tokens without traces; its JSON summary on stdout."""
    return _write_once(tmp_path_factory, "sweep", "sweep", "--model", "tiny-llama", "--len", "64,128,256",
                       "--warmup", "1", "--repeat", "2", "--no-trace", "--json")


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `ttft-profile` as a user would: a new process, captured output (end-to-end checks only:
    each call pays Python, torch and transformers imports; prefer `cli`)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    env.pop("COLUMNS", None)  # a pipe, as in CI: the tables must still show every number
    return subprocess.run([sys.executable, "-m", "profiler.cli", *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def python_without_torch(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run Python code in a process where `import torch` fails, as on a laptop with only a run folder."""
    prelude = "import sys; sys.modules['torch'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def cli_without_torch(*args: str) -> subprocess.CompletedProcess:
    """`ttft-profile ARGS` in a process where torch cannot be imported."""
    return python_without_torch(f"from profiler.cli import main\nsys.exit(main({list(args)!r}))\n")
