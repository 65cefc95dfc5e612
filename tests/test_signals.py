"""SIGTERM and SIGINT at any moment: the staged folder is removed, one line, exit 143/130; after the
commit the line says the folder is complete; a killed run's leftovers are named, never read (issue 12, item 2)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli

RUN = ("--model", "tiny-qwen3", "--len", "32", "--warmup", "0", "--repeat", "2")
ROOT = Path(__file__).resolve().parents[1]


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0)  # the handler runs at the next bytecode, here


def _staging(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if ".partial-" in p.name]


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("ttft-profile:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _in_build(monkeypatch, signum):
    from profiler.session import Session

    monkeypatch.setattr(Session, "build", lambda self: _signal_self(signum))


def _in_repeats(monkeypatch, signum):
    @contextlib.contextmanager
    def bar(label):
        def update(detail, done, total):
            if done == 1:  # after the first repeat, before the last
                _signal_self(signum)

        yield update

    monkeypatch.setattr("profiler.cli.profile.progress_bar", bar)


def _in_trace_writing(monkeypatch, signum):
    from analyzers.trace import export

    real = export.finalize_trace

    def finalize(*args, **kwargs):
        _signal_self(signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(export, "finalize_trace", finalize)


def _just_before_commit(monkeypatch, signum):
    real = os.rename

    def rename(src, dst, *args, **kwargs):
        if ".partial-" in os.fspath(src):
            _signal_self(signum)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr("profiler.runfolder.os.rename", rename)


@pytest.mark.parametrize("moment", [_in_build, _in_repeats, _in_trace_writing, _just_before_commit],
                         ids=["build", "repeats", "trace", "commit"])
@pytest.mark.parametrize(("signum", "code", "word"), [(signal.SIGTERM, 143, "terminated"),
                                                       (signal.SIGINT, 130, "interrupted")], ids=["TERM", "INT"])
def test_a_signal_before_the_commit_leaves_no_folder(tmp_path, monkeypatch, moment, signum, code, word):
    moment(monkeypatch, signum)
    result = cli(*RUN, "--out", str(tmp_path / "r"))
    assert result.returncode == code
    assert _one_line(result.stderr) == f"ttft-profile: {word}; no run folder was written."
    assert list(tmp_path.iterdir()) == []


def test_a_signal_during_the_commit_rename_after_it_is_done_keeps_the_folder(tmp_path, monkeypatch):
    real = os.rename

    def rename(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        _signal_self(signal.SIGTERM)

    monkeypatch.setattr("profiler.runfolder.os.rename", rename)
    out = tmp_path / "r"
    result = cli(*RUN, "--out", str(out))
    assert result.returncode == 143
    assert _one_line(result.stderr) == f"ttft-profile: terminated; the run folder {out} is complete."
    assert (out / "run.json").is_file() and _staging(tmp_path) == []


def test_a_signal_while_printing_the_table_says_the_folder_is_complete(tmp_path, monkeypatch):
    monkeypatch.setattr("analyzers.render.terminal.render_run",
                        lambda *a, **k: _signal_self(signal.SIGINT))
    out = tmp_path / "r"
    result = cli(*RUN, "--out", str(out))
    assert result.returncode == 130
    assert _one_line(result.stderr) == f"ttft-profile: interrupted; the run folder {out} is complete."
    assert (out / "run.json").is_file() and _staging(tmp_path) == []


def test_a_sweep_terminated_between_lengths_leaves_no_folder(tmp_path, monkeypatch):
    from profiler.session import Session

    real, calls = Session.profile, []

    def profile(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            _signal_self(signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Session, "profile", profile)
    result = cli("sweep", *RUN[:2], "--len", "32,48", "--warmup", "0", "--repeat", "1", "--no-trace",
                 "--out", str(tmp_path / "s"))
    assert result.returncode == 143
    assert list(tmp_path.iterdir()) == []


def test_the_previous_sigterm_handler_is_restored():
    def mine(signum, frame):
        return None

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert cli("models").returncode == 0
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_runs_staging_folder_is_named_on_the_next_run(tmp_path):
    dead = tmp_path / f".old.partial-{_dead_pid()}-x1y2"
    dead.mkdir()
    (dead / "run.json").write_text("{}")
    live = tmp_path / f".busy.partial-{os.getpid()}-a1b2"  # a run still writing: not a leftover
    live.mkdir()
    result = cli(*RUN, "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    named = [line for line in result.stderr.splitlines() if "killed earlier" in line]
    assert named == [f"a run killed earlier left {dead}; remove it."]
    assert dead.is_dir()  # named, never removed behind the user's back


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_a_staging_folder_is_never_read_as_a_run(tmp_path, qwen3_run, command):
    import shutil

    staged = tmp_path / f".r.partial-{_dead_pid()}-abcd"
    shutil.copytree(qwen3_run.path, staged)  # whole-looking, but never committed
    result = cli(command, str(staged))
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert str(staged) in line and "never finished" in line, line
    assert not (staged / "report.html").exists()


def test_sigterm_to_a_real_long_run_removes_its_staging_folder(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "profiler.cli", "--model", "tiny-qwen3", "--len", "16", "--warmup",
                             "0", "--repeat", "100000", "--no-trace", "--out", str(tmp_path / "r")],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):  # until it is staging (the handler is installed by then), at most ~2 minutes
            if _staging(tmp_path) or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert _staging(tmp_path), "the run never started staging"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "ttft-profile: terminated; no run folder was written." in err
    assert list(tmp_path.iterdir()) == []
