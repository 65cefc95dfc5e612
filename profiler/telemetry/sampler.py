"""Device telemetry sampled on a background thread while the prefills run.

`t_ns` is time.time_ns(), the clock of torch.profiler's Chrome trace
(ts = (t_ns - baseTimeNanoseconds) / 1000), so counters line up with kernels;
`perf_ns` is perf_counter_ns(), the clock of the run's own ranges. The sampler
reads NVML when given a device and NVML opens there; otherwise this process's
CPU use and memory fill the same tracks, and one warning line says why.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from analyzers.errors import ParameterError
from profiler.telemetry.nvml import NvmlSource
from profiler.telemetry.process import ProcessSource
from profiler.telemetry.source import Source

THREAD_NAME = "ttft-telemetry"
NAN = float("nan")


@dataclass(frozen=True)
class Clocks:
    """Where the sampler reads time; tests pass stepping counters so every sample's time is known."""

    wall: Callable[[], int] = time.time_ns
    perf: Callable[[], int] = time.perf_counter_ns
    cpu: Callable[[], int] = time.process_time_ns  # this process's CPU time, for the process source


REAL_CLOCKS = Clocks()


class Sampler:
    """Samples one device (or this process) on a daemon thread between start() and stop().

    `kind` ("nvml" or "cpu"), `device` and `warning` are known after start(). The
    first sample is taken in start() and the last in stop(), so even a run shorter
    than one interval has a window. `nvml` stands in for the pynvml module.
    """

    def __init__(self, interval_ms: float = 10.0, device_index: int | str | None = None, *, nvml: object = None,
                 clocks: Clocks = REAL_CLOCKS) -> None:
        if not (isinstance(interval_ms, (int, float)) and interval_ms > 0):
            raise ParameterError("telemetry_interval_ms", interval_ms, "must be positive", "use the default 10")
        self.interval_ms = float(interval_ms)
        self.device_index = device_index
        self.warning: str | None = None
        self.gaps: dict[str, int] = {}
        self.gap_errors: dict[str, str] = {}  # metric -> the first error that made a gap
        self._nvml, self._clocks = nvml, clocks
        self._source: Source | None = None
        self._notes: list[str] = []
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = self._stopped = self._closed = False

    @property
    def kind(self) -> str | None:
        return None if self._source is None else self._source.kind

    @property
    def device(self) -> str:
        return "cpu" if self._source is None else self._source.device

    @property
    def unsupported(self) -> list[str]:
        return [] if self._source is None else list(self._source.unsupported)

    @property
    def notes(self) -> list[str]:
        return self._notes + ([] if self._source is None else self._source.notes)

    @property
    def wants_spans(self) -> bool:
        """Host range spans time the work itself only when it runs on the host, the process sampled here."""
        return self.kind == "cpu" and self.device_index is None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> Sampler:
        if self._started:
            raise RuntimeError("a Sampler runs once; make a new one for the next run")
        self._started = True
        self._source = self._open_source()
        try:
            self.sample_once()
        except BaseException:
            self._close()
            raise
        self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def _open_source(self) -> Source:
        """NVML where a device is named and NVML opens for it, else this process (with the reason why not)."""
        if self.device_index is not None:
            nvml = NvmlSource(self.device_index, self._nvml)
            reason = nvml.open()
            if reason is None:
                return nvml
            self.warning = f"NVML unavailable ({reason}): recording process CPU utilisation and memory instead"
        process = ProcessSource(self._clocks.cpu)
        process.open()  # never refuses: this process is always there
        return process

    def stop(self) -> None:
        """Stop and join the thread, take the closing sample, release the source. Safe to call twice."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stop_event.set()
        thread = self._thread
        try:
            if thread is not None:
                _join(thread, max(2.0, 5 * self.interval_ms / 1000))
        finally:
            if thread is not None and thread.is_alive():  # stuck inside a driver call: it is a daemon
                self._notes.append("telemetry thread did not stop in time; its last samples are missing")
            else:
                try:
                    self.sample_once()
                except Exception as exc:  # the closing sample must not mask the run's own outcome
                    self._notes.append(f"closing telemetry sample failed: {exc!r}")
                self._close()

    def _close(self) -> None:
        if not self._closed and self._source is not None:
            self._closed = True
            self._source.close()

    def _loop(self) -> None:
        try:
            while not self._stop_event.wait(self.interval_ms / 1000):
                self.sample_once()
        except Exception as exc:  # a bug here must not take the run down; say so instead
            self._notes.append(f"telemetry stopped early: {exc!r}")

    # -- one tick --------------------------------------------------------------------------
    def sample_once(self) -> None:
        """One round of readings; the thread calls it every interval (tests call it directly)."""
        with self._lock:
            self._source.read(int(self._clocks.wall()), int(self._clocks.perf()), self._add, self._gap)

    def _add(self, t: int, p: int, metric: str, value: float) -> None:
        self._rows.append({"t_ns": t, "perf_ns": p, "device": self.device, "metric": metric, "value": value})

    def _gap(self, t: int, p: int, metric: str, error: BaseException | str) -> None:
        self._add(t, p, metric, NAN)
        self.gaps[metric] = self.gaps.get(metric, 0) + 1
        self.gap_errors.setdefault(metric, error if isinstance(error, str) else type(error).__name__)

    # -- results ---------------------------------------------------------------------------
    def samples(self) -> list[dict]:
        """Rows {t_ns, perf_ns, device, metric, value} in time order; gaps have value NaN."""
        with self._lock:
            rows = [dict(row) for row in self._rows]
        return sorted(rows, key=lambda row: row["t_ns"])

    def window(self) -> tuple[int | None, int | None, int]:
        with self._lock:
            times = [row["t_ns"] for row in self._rows]
        return (min(times), max(times), len(times)) if times else (None, None, 0)

    def summary(self, marks: list[tuple], spans: list | None) -> dict:
        """What run.json keeps: the sampling window, the caveats, and averages per phase and component."""
        from analyzers.telemetry.spans import attribute_samples  # pandas: only once there is a run to summarise

        first, last, count = self.window()
        table = attribute_samples(self.samples(), marks, spans, self.interval_ms)
        return {
            "kind": self.kind,
            "device": self.device,
            "warning": self.warning,
            "interval_ms": self.interval_ms,
            "window_ms": (last - first) / 1e6 if first is not None and last is not None else 0.0,
            "samples": count,
            "gaps": dict(self.gaps),
            "unsupported": self.unsupported,
            "notes": self.notes,
            "file": "nvml.csv",
            "attributed": table.to_dict("records"),
        }


class NullSampler:
    """Telemetry switched off: the sampler's calls, answered with nothing, so callers never ask whether it is on."""

    wants_spans = False

    def stop(self) -> None:
        return None

    def samples(self) -> list[dict]:
        return []

    def summary(self, marks: list[tuple], spans: list | None) -> None:
        return None


def _join(thread: threading.Thread, timeout: float) -> None:
    """Join even when Ctrl-C lands during the join itself, then let the interrupt through."""
    try:
        thread.join(timeout)
    except KeyboardInterrupt:
        thread.join(timeout)
        raise
