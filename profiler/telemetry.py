"""Device telemetry sampled on a background thread while the prefills run.

The trace says which kernel ran, not that the SM clock dropped under a power
cap halfway through the repeats; NVML does. `t_ns` is time.time_ns(), the
clock of torch.profiler's Chrome trace (ts = (t_ns - baseTimeNanoseconds) /
1000), so counters line up with kernels; `perf_ns` is perf_counter_ns(), the
clock of the run's own ranges. Without NVML the same tracks hold this
process's CPU use and memory, and one warning line says why. An NVML call
failing mid-run is a gap, never the end of the run.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Callable

from analyzers.telemetry.samples import CLOCK_EVENT_REASONS, throttle_reason_names  # noqa: F401 (re-exported)
from profiler.errors import UsageError

THREAD_NAME = "ttft-telemetry"
NAN = float("nan")
# NVML's GPM docs: two nvmlGpmSampleGet calls should be more than 100 ms apart
# (the counters refresh internally at that rate); closer pairs give noise.
GPM_MIN_INTERVAL_NS = 100_000_000
COLUMNS = ("t_ns", "perf_ns", "device", "metric", "value")


@dataclass(frozen=True)
class Polled:
    """One metric read by one NVML call per tick; later `functions` are fallbacks for older drivers."""

    metric: str
    functions: tuple[str, ...]
    args: tuple[str, ...]  # names of NVML constants passed after the handle
    convert: Callable[[Any], float]


POLLED: tuple[Polled, ...] = (
    Polled("sm_clock_mhz", ("nvmlDeviceGetClockInfo",), ("NVML_CLOCK_SM",), float),
    Polled("mem_clock_mhz", ("nvmlDeviceGetClockInfo",), ("NVML_CLOCK_MEM",), float),
    Polled("power_w", ("nvmlDeviceGetPowerUsage",), (), lambda mw: mw / 1000.0),
    Polled("temp_c", ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"), ("NVML_TEMPERATURE_GPU",), float),
    Polled("mem_used_bytes", ("nvmlDeviceGetMemoryInfo",), (), lambda mem: int(mem.used)),
    Polled("clock_event_reasons",
           ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"), (), int),
)
# (metric, nvmlDeviceGetSamples type, field of nvmlDeviceGetUtilizationRates when the buffer is not offered)
UTILISATION: tuple[tuple[str, str, str], ...] = (
    ("gpu_util_pct", "NVML_GPU_UTILIZATION_SAMPLES", "gpu"),
    ("mem_util_pct", "NVML_MEMORY_UTILIZATION_SAMPLES", "memory"),
)
GPM_METRICS: tuple[tuple[str, str], ...] = (
    ("gpm_sm_util_pct", "NVML_GPM_METRIC_SM_UTIL"),
    ("gpm_sm_occupancy_pct", "NVML_GPM_METRIC_SM_OCCUPANCY"),
    ("gpm_tensor_util_pct", "NVML_GPM_METRIC_ANY_TENSOR_UTIL"),
    ("gpm_dram_bw_util_pct", "NVML_GPM_METRIC_DRAM_BW_UTIL"),
)
# nvmlValueType_t -> the member of the nvmlValue_t union that holds a sample
SAMPLE_VALUE_FIELDS: tuple[tuple[str, str], ...] = (
    ("NVML_VALUE_TYPE_DOUBLE", "dVal"), ("NVML_VALUE_TYPE_UNSIGNED_INT", "uiVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", "ulVal"), ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", "ullVal"),
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", "sllVal"), ("NVML_VALUE_TYPE_SIGNED_INT", "siVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", "usVal"),
)
# Errors that mean "this driver/GPU does not offer it" when seen before the first success:
# the metric is left out (or the next fallback tried) instead of filling the run with gaps.
_ABSENT_ERRORS = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound", "NVMLError_NoPermission")


class Sampler:
    """Samples one device (or this process) on a daemon thread between start() and stop().

    `kind` ("nvml" or "cpu") and `warning` are known after start(). The first
    sample is taken in start() and the last in stop(), so even a run shorter
    than one interval has a window.
    """

    def __init__(self, interval_ms: float = 10.0, device_index: int | str | None = None, nvml: Any = None,
                 clock: Callable[[], int] = time.time_ns, perf_clock: Callable[[], int] = time.perf_counter_ns,
                 *, cpu_clock: Callable[[], int] = time.process_time_ns) -> None:
        if not interval_ms > 0:
            raise UsageError(f"--nvml-interval-ms {interval_ms} must be positive; use the default 10.")
        self.interval_ms = float(interval_ms)
        self.device_index = device_index
        self.kind: str | None = None
        self.warning: str | None = None
        self.device = "cpu"
        self.gaps: dict[str, int] = {}
        self.gap_errors: dict[str, str] = {}  # metric -> the first error that made a gap
        self.unsupported: list[str] = []
        self.notes: list[str] = []
        self._module, self._clock, self._perf, self._cpu_clock = nvml, clock, perf_clock, cpu_clock
        self._nvml: Any = None  # the module once NVML is initialised, with the device's handle
        self._handle: Any = None
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = self._stopped = self._closed = False
        self._t0: int | None = None
        self._polled: dict[str, int] = {}  # metric -> index into Polled.functions in use
        self._resolved: set[str] = set()
        self._util_mode: dict[str, str] = {}  # metric -> "buffer" | "poll"
        self._last_seen_us: dict[str, int] = {}
        self._gpm: list[Any] = []  # two sample buffers: [window start, window end]
        self._gpm_prev: tuple[int, int] | None = None  # (t, p) of the window start
        self._gpm_query: Any = None
        self._cpu_prev: tuple[int, int] | None = None
        self._statm = True

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> Sampler:
        if self._started:
            raise RuntimeError("a Sampler runs once; make a new one for the next run")
        self._started = True
        reason = self._open_nvml() if self.device_index is not None else None
        if self._nvml is None:
            self.kind = "cpu"
            if reason is not None:
                self.warning = f"NVML unavailable ({reason}): recording process CPU utilisation and memory instead"
        else:
            self.kind = "nvml"
            self._open_gpm()
        try:
            self.sample_once()
        except BaseException:
            self._close()
            raise
        self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and join the thread, take the closing sample, release NVML. Safe to call twice."""
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
                self.notes.append("telemetry thread did not stop in time; its last samples are missing")
            else:
                try:
                    self.sample_once()
                except Exception as exc:  # the closing sample must not mask the run's own outcome
                    self.notes.append(f"closing telemetry sample failed: {exc!r}")
                self._close()

    def _loop(self) -> None:
        try:
            while not self._stop_event.wait(self.interval_ms / 1000):
                self.sample_once()
        except Exception as exc:  # a bug here must not take the run down; say so instead
            self.notes.append(f"telemetry stopped early: {exc!r}")

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

    # -- one tick --------------------------------------------------------------------------
    def sample_once(self) -> None:
        """One round of readings; the thread calls it every interval (tests call it directly)."""
        with self._lock:
            t, p = int(self._clock()), int(self._perf())
            if self._t0 is None:
                self._t0 = t
            if self._nvml is None:
                self._read_cpu(t, p)
                return
            for spec in POLLED:
                self._read_polled(spec, t, p)
            self._read_utilisation(t, p)
            self._read_gpm(t, p)

    def _add(self, t: int, p: int, metric: str, value: float) -> None:
        self._rows.append({"t_ns": t, "perf_ns": p, "device": self.device, "metric": metric, "value": value})

    def _gap(self, t: int, p: int, metric: str, error: BaseException | str) -> None:
        self._add(t, p, metric, NAN)
        self.gaps[metric] = self.gaps.get(metric, 0) + 1
        self.gap_errors.setdefault(metric, error if isinstance(error, str) else type(error).__name__)

    def _failed(self, t: int, p: int, metric: str, exc: BaseException) -> None:
        """An error before the metric ever worked means 'not offered here'; after, it is a gap."""
        if metric not in self._resolved and self._absent(exc):
            self.unsupported.append(metric)
        else:
            self._gap(t, p, metric, exc)
        self._resolved.add(metric)

    def _absent(self, exc: BaseException) -> bool:
        if isinstance(exc, AttributeError):  # an nvidia-ml-py without the function
            return True
        return any(isinstance(exc, cls) for cls in (getattr(self._nvml, n, None) for n in _ABSENT_ERRORS) if cls)

    def _read_polled(self, spec: Polled, t: int, p: int) -> None:
        nvml = self._nvml
        while spec.metric not in self.unsupported:
            index = self._polled.get(spec.metric, 0)
            try:
                raw = getattr(nvml, spec.functions[index])(self._handle, *(getattr(nvml, a) for a in spec.args))
            except (AttributeError, nvml.NVMLError) as exc:
                if spec.metric not in self._resolved and self._absent(exc) and index + 1 < len(spec.functions):
                    self._polled[spec.metric] = index + 1
                    continue
                self._failed(t, p, spec.metric, exc)
                return
            self._resolved.add(spec.metric)
            self._add(t, p, spec.metric, spec.convert(raw))
            return

    def _read_utilisation(self, t: int, p: int) -> None:
        nvml, rates = self._nvml, None
        for metric, sample_type, field in UTILISATION:
            if metric in self.unsupported:
                continue
            mode = self._util_mode.get(metric)
            if mode is None:  # the whole buffer (since=0) tells whether the driver keeps one
                self._last_seen_us[metric] = (self._t0 or t) // 1000
                mode = self._util_mode[metric] = "buffer" if self._read_buffer(metric, sample_type, 0, t, p) else "poll"
            if mode == "buffer":
                try:
                    self._read_buffer(metric, sample_type, self._last_seen_us[metric], t, p)
                except (AttributeError, nvml.NVMLError) as exc:
                    self._gap(t, p, metric, exc)
                continue
            if rates is None:
                try:
                    rates = nvml.nvmlDeviceGetUtilizationRates(self._handle)
                except (AttributeError, nvml.NVMLError) as exc:
                    rates = exc
            if isinstance(rates, BaseException):
                self._failed(t, p, metric, rates)
            else:
                self._resolved.add(metric)
                self._add(t, p, metric, float(getattr(rates, field)))

    def _read_buffer(self, metric: str, sample_type: str, since_us: int, t: int, p: int) -> bool:
        """Samples the driver buffered after the last one seen; False when it offers no buffer.

        Their timestamps are CPU microseconds since the epoch (NVML docs); perf_ns is
        derived with the time_ns - perf_counter_ns offset of this tick.
        """
        nvml = self._nvml
        probing = since_us == 0
        try:
            value_type, samples = nvml.nvmlDeviceGetSamples(self._handle, getattr(nvml, sample_type), since_us)
        except nvml.NVMLError_NotFound:  # nothing new since `since_us`
            return not probing
        except (AttributeError, nvml.NVMLError):
            if probing:
                return False
            raise
        if probing and not samples:
            return False
        field = next((f for name, f in SAMPLE_VALUE_FIELDS if getattr(nvml, name, None) == value_type), "uiVal")
        last = self._last_seen_us[metric]
        for sample in samples:
            stamp = int(sample.timeStamp)
            if stamp > self._last_seen_us[metric]:
                self._add(stamp * 1000, stamp * 1000 - (t - p), metric, float(getattr(sample.sampleValue, field)))
                last = max(last, stamp)
        self._last_seen_us[metric] = last
        self._resolved.add(metric)
        return True

    def _read_gpm(self, t: int, p: int) -> None:
        """GPM metrics are averages between two samples >= 100 ms apart; rows sit at the window's start."""
        if not self._gpm:
            return
        nvml, (first, second) = self._nvml, self._gpm
        try:
            if self._gpm_prev is None:
                nvml.nvmlGpmSampleGet(self._handle, first)
                self._gpm_prev = (t, p)
                return
            if p - self._gpm_prev[1] < GPM_MIN_INTERVAL_NS:
                return
            nvml.nvmlGpmSampleGet(self._handle, second)
        except nvml.NVMLError as exc:
            self._gpm_prev = None  # the next tick starts a fresh window
            for metric, _ in GPM_METRICS:
                self._gap(t, p, metric, exc)
            return
        (t0, p0), self._gpm_prev = self._gpm_prev, (t, p)
        self._gpm.reverse()  # this window's end is the next one's start
        query = self._gpm_query
        query.version, query.numMetrics = nvml.NVML_GPM_METRICS_GET_VERSION, len(GPM_METRICS)
        query.sample1, query.sample2 = first, second
        for i, (_, const) in enumerate(GPM_METRICS):
            query.metrics[i].metricId = getattr(nvml, const)
        try:
            nvml.nvmlGpmMetricsGet(query)
        except nvml.NVMLError as exc:
            for metric, _ in GPM_METRICS:
                self._gap(t0, p0, metric, exc)
            return
        for i, (metric, _) in enumerate(GPM_METRICS):
            slot = query.metrics[i]
            if int(slot.nvmlReturn) != nvml.NVML_SUCCESS:
                self._gap(t0, p0, metric, type(nvml.NVMLError(int(slot.nvmlReturn))).__name__)
            else:
                self._add(t0, p0, metric, float(slot.value))

    def _read_cpu(self, t: int, p: int) -> None:
        """CPU time of all this process's threads per wall time: 100 = one core busy."""
        cpu = int(self._cpu_clock())
        if self._cpu_prev is not None and p > self._cpu_prev[1]:
            self._add(t, p, "cpu_util_pct", 100.0 * (cpu - self._cpu_prev[0]) / (p - self._cpu_prev[1]))
        self._cpu_prev = (cpu, p)
        self._add(t, p, "rss_bytes", self._rss())

    def _rss(self) -> int:
        if self._statm:
            try:
                with open("/proc/self/statm", "rb") as fh:
                    return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError, IndexError):
                self._statm = False
                self.notes.append("rss_bytes is the peak resident size (getrusage): /proc/self/statm is unreadable")
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)

    # -- NVML setup and teardown ----------------------------------------------------------
    def _open_nvml(self) -> str | None:
        """Init NVML and find the device; the reason it could not, for the warning line."""
        nvml = self._module
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError:
                return "nvidia-ml-py is not installed"
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return type(exc).__name__
        try:
            handle = _device_handle(nvml, self.device_index)
        except nvml.NVMLError as exc:
            with suppress(Exception):
                nvml.nvmlShutdown()
            return f"{type(exc).__name__} for device {self.device_index}"
        self._nvml, self._handle = nvml, handle
        index = self.device_index
        self.device = f"nvml:{index}" if isinstance(index, int) else str(index)
        return None

    def _open_gpm(self) -> None:
        """GPM exists on Hopper and newer only; anything less is 'no GPM rows', never an error."""
        nvml = self._nvml
        try:
            if not nvml.nvmlGpmQueryDeviceSupport(self._handle).isSupportedDevice:
                return
            self._gpm_query = nvml.c_nvmlGpmMetricsGet_t()
            self._gpm.append(nvml.nvmlGpmSampleAlloc())
            self._gpm.append(nvml.nvmlGpmSampleAlloc())
        except (AttributeError, nvml.NVMLError):
            self._free_gpm()

    def _free_gpm(self) -> None:
        for sample in self._gpm:
            with suppress(Exception):  # teardown: the run's result matters more than a failed free
                self._nvml.nvmlGpmSampleFree(sample)
        self._gpm = []

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._nvml is not None:
            self._free_gpm()
            with suppress(Exception):
                self._nvml.nvmlShutdown()


def _device_handle(nvml: Any, device: int | str) -> Any:
    """An int is NVML's index; a string is a UUID ('GPU-…', 'MIG-…') or a PCI bus id."""
    if isinstance(device, int):
        return nvml.nvmlDeviceGetHandleByIndex(device)
    if device.startswith(("GPU-", "MIG-")):
        return nvml.nvmlDeviceGetHandleByUUID(device)
    return nvml.nvmlDeviceGetHandleByPciBusId(device)


def _join(thread: threading.Thread, timeout: float) -> None:
    """Join even when Ctrl-C lands during the join itself, then let the interrupt through."""
    try:
        thread.join(timeout)
    except KeyboardInterrupt:
        thread.join(timeout)
        raise
