"""`--out` is checked before anything slow: a symlink, a dangling symlink, a file, a non-empty folder or an
unwritable place is refused before the model is built, and a folder another run filled meanwhile is never
replaced (issue 12, item 3)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import cli

RUN = ("--model", "tiny-qwen3", "--len", "32", "--warmup", "0", "--repeat", "1", "--no-trace")


@pytest.fixture
def never_built(monkeypatch):
    """Fail the test if the model's config is even read: the refusal must come first."""
    from profiler.session import Session

    def refuse(*args, **kwargs):
        raise AssertionError("the output folder was not checked before the model")

    monkeypatch.setattr(Session, "prepare", refuse)
    monkeypatch.setattr(Session, "build", refuse)


def _refused(out: Path, *command: str) -> str:
    lengths = ("--len", "32,48") if command == ("sweep",) else ()
    result = cli(*command, *RUN, *lengths, "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ttft-profile:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"--out {out}" in lines[0], lines[0]
    return lines[0]


def _no_staging(parent: Path) -> None:
    assert [p for p in parent.iterdir() if ".partial-" in p.name] == []


@pytest.mark.parametrize("command", [(), ("sweep",)], ids=["profile", "sweep"])
def test_a_symlink_is_refused_and_its_target_untouched(tmp_path, never_built, command):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "out").symlink_to(target)
    assert "symbolic link" in _refused(tmp_path / "out", *command)
    assert list(target.iterdir()) == []
    _no_staging(tmp_path)


def test_a_dangling_symlink_is_refused_and_nothing_is_created(tmp_path, never_built):
    (tmp_path / "out").symlink_to(tmp_path / "missing")
    assert "symbolic link to nothing" in _refused(tmp_path / "out")
    assert not (tmp_path / "missing").exists() and (tmp_path / "out").is_symlink()
    _no_staging(tmp_path)


def test_a_file_is_refused_and_kept(tmp_path, never_built):
    (tmp_path / "out").write_text("mine")
    assert "is a file" in _refused(tmp_path / "out")
    assert (tmp_path / "out").read_text() == "mine"


def test_a_folder_with_files_is_refused_and_kept(tmp_path, never_built):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run.json").write_text("{}")
    assert "not empty" in _refused(tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["run.json"]
    _no_staging(tmp_path)


def test_a_place_under_a_file_is_refused(tmp_path, never_built):
    (tmp_path / "notes").write_text("x")
    assert "not a folder" in _refused(tmp_path / "notes" / "deeper" / "run")


def test_a_place_inside_another_runs_staging_folder_is_refused(tmp_path, never_built):
    staging = tmp_path / f".r.partial-{os.getpid()}-abcd"
    staging.mkdir()
    assert "staging folder" in _refused(staging / "mine")


def test_a_read_only_place_is_refused(tmp_path, never_built):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root, which may write into a 0500 folder: nothing to refuse")
        assert "cannot write" in _refused(locked / "new" / "run")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_an_empty_existing_folder_is_used(tmp_path):
    (tmp_path / "out").mkdir()
    result = cli(*RUN, "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "run.json").is_file()
    _no_staging(tmp_path)


@pytest.mark.parametrize("first", ["folder", "file"])
def test_a_second_run_never_replaces_what_a_first_wrote_meanwhile(tmp_path, monkeypatch, first):
    from analyzers import store

    out, real = tmp_path / "out", store.save_run

    def save_then_race(run, folder, tables=None):
        written = real(run, folder, tables)
        if first == "folder":  # the other run committed while this one was saving
            out.mkdir()
            (out / "run.json").write_text("first")
        else:
            out.write_text("first")
        return written

    monkeypatch.setattr(store, "save_run", save_then_race)
    result = cli(*RUN, "--out", str(out))
    assert result.returncode == 2
    assert "written by another run" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert (out / "run.json" if first == "folder" else out).read_text() == "first"
    _no_staging(tmp_path)
