"""A full disk while a run, a sweep, a report or a calibration is written: one sentence naming the file
(and the space it needed), exit 2, and nothing half-written left behind (issue 12, item 1)."""
from __future__ import annotations

import errno
import os
import shutil

import pytest

from tests.conftest import cli

RUN = ("--model", "tiny-qwen3", "--len", "32", "--warmup", "0", "--repeat", "1")


@pytest.fixture
def disk_full_at(monkeypatch):
    """Make the atomic write of the file called NAME fail as on a full disk."""
    real = os.replace

    def arm(name: str) -> None:
        def replace(src, dst, *args, **kwargs):
            if os.path.basename(os.fspath(dst)) == name:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(src, dst, *args, **kwargs)

        monkeypatch.setattr("analyzers.atomic.os.replace", replace)

    return arm


def _one_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("ttft-profile:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("name", ["run.json", "breakdown.csv", "trace.json.gz"])
def test_a_full_disk_while_saving_a_run_names_the_file_and_leaves_nothing(tmp_path, disk_full_at, name):
    disk_full_at(name)
    out = tmp_path / "runs" / "r"
    result = cli(*RUN, "--out", str(out))
    assert result.returncode == 2
    line = _one_error(result.stderr)
    assert f"{out / name}" in line and "No space left on device" in line and "bytes needed" in line, line
    assert ".partial-" not in line  # the path the user asked for, not the staging folder's
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_trace_the_profiler_could_not_write_is_named_as_the_trace(tmp_path, monkeypatch):
    from torch.profiler import profile

    def full(self, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(profile, "export_chrome_trace", full)
    out = tmp_path / "r"
    result = cli(*RUN, "--out", str(out))
    assert result.returncode == 2
    line = _one_error(result.stderr)
    assert f"{out / 'trace.json.gz'}" in line and "raw" not in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_trace_the_profiler_silently_left_out_is_named_as_the_trace(tmp_path, monkeypatch):
    from torch.profiler import profile

    monkeypatch.setattr(profile, "export_chrome_trace", lambda self, path: None)
    result = cli(*RUN, "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    line = _one_error(result.stderr)
    assert "trace.json.gz" in line and ".trace.raw.json" not in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_the_sweep_summary_leaves_no_sweep(tmp_path, disk_full_at):
    disk_full_at("sweep.json")
    out = tmp_path / "s"
    result = cli("sweep", "--model", "tiny-qwen3", "--len", "32,48", "--warmup", "0", "--repeat", "1", "--no-trace",
                 "--out", str(out))
    assert result.returncode == 2
    assert str(out / "sweep.json") in _one_error(result.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["report.html", "a figure"])
def test_a_full_disk_while_writing_a_report_keeps_the_run_and_leaves_no_half_report(tmp_path, disk_full_at,
                                                                                     monkeypatch, qwen3_run, name):
    run = tmp_path / "run"
    shutil.copytree(qwen3_run.path, run)
    before = sorted(p.name for p in run.iterdir())
    if name == "a figure":  # figures are drawn by matplotlib, not the atomic writer
        from analyzers.render import figures

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run / "figures" / ".fig.tmp.png"))

        for drawing in ("waterfall", "roofline_chart", "heatmap", "scaling_chart", "stacked_bars", "telemetry_chart"):
            monkeypatch.setattr(figures, drawing, full)
    else:
        disk_full_at(name)
    result = cli("report", str(run))
    assert result.returncode == 2
    line = _one_error(result.stderr)
    assert "No space left on device" in line and "cannot write" in line, line
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_full_disk_while_saving_the_calibration_names_the_cache(tmp_path, disk_full_at, monkeypatch):
    from analyzers.cost.ceilings import Ceilings, cache_path

    fake = Ceilings("fake cpu", {"float32": 1e12}, 1e10, "calibrated", {"threads": 2})
    monkeypatch.setattr("profiler.calibrate.calibrate", lambda device, name: fake)
    disk_full_at(cache_path().name)
    result = cli("calibrate", "--device", "cpu")
    assert result.returncode == 2
    assert str(cache_path()) in _one_error(result.stderr)
    assert not cache_path().exists()
