"""Shared fixtures: tiny models built once per session, and the CLI in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = ROOT.parent / "shared" / "external-traces"


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


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `ttft-profile` as a user would: a new process, captured output."""
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
