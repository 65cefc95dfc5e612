"""The small things a Python session and a shell expect: --version, `python -m profiler`."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from profiler.version import __version__
from tests.conftest import ROOT, cli


def test_version_names_ours_and_the_libraries_a_bug_report_needs():
    done = cli("--version")
    assert done.returncode == 0
    line = done.stdout.strip()
    assert line.startswith(f"ttft-profile {__version__},")
    assert f"torch {version('torch')}" in line and f"transformers {version('transformers')}" in line


def test_python_dash_m_profiler_is_the_command():
    done = subprocess.run([sys.executable, "-m", "profiler", "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(f"ttft-profile {__version__}")
