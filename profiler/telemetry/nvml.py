"""NVML as a telemetry source: clocks, power, heat, memory, utilisation and GPM of one GPU.

The trace says which kernel ran, not that the SM clock dropped under a power
cap halfway through the repeats; NVML does. An NVML call failing mid-run is a
gap, never the end of the run. An error seen before a metric ever worked means
the driver or GPU does not offer it: the metric is left out (or an older
driver's fallback tried) instead of filling the run with gaps.

Two NVML readings are not what their names suggest, and the run says which
was read (`notes`): nvmlDeviceGetPowerUsage is a one-second average on Ampere
and newer, so power is read from the instantaneous field where the driver has
it; and "utilisation" is the share of a driver window in which any kernel ran
(memory: any access), not how much of the SMs or bandwidth was used. GPM's
metrics are that, where the GPU has GPM.
"""
from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Callable

from profiler.telemetry.source import Add, Gap

# NVML's GPM docs: two nvmlGpmSampleGet calls should be more than 100 ms apart
# (the counters refresh internally at that rate); closer pairs give noise.
GPM_MIN_INTERVAL_NS = 100_000_000


@dataclass(frozen=True)
class Call:
    """One way to read a metric: an NVML function and the constants passed after the handle."""

    function: str
    args: tuple[str, ...] = ()  # names of NVML constants; with `field_value`, NVML field ids
    convert: Callable[[Any], float] = float
    field_value: bool = False  # read one field through nvmlDeviceGetFieldValues
    note: str | None = None  # what the metric holds when read this way, for the run's notes


@dataclass(frozen=True)
class Polled:
    """One metric read by one NVML call per tick; later `calls` are fallbacks for older drivers and GPUs."""

    metric: str
    calls: tuple[Call, ...]


def _milliwatts(mw: Any) -> float:
    return mw / 1000.0


POWER_INSTANT_NOTE = "power_w is instantaneous power (NVML field NVML_FI_DEV_POWER_INSTANT)"
POWER_AVERAGE_NOTE = ("power_w is nvmlDeviceGetPowerUsage, a one-second average on Ampere and newer (this driver "
                      "or GPU has no instantaneous power field): it lags and smooths phases shorter than a second")
UTILISATION_NOTE = ("gpu_util_pct and mem_util_pct are NVML utilisation: the share of each driver sample window "
                    "in which any kernel ran (memory: any read or write), not the share of SMs or bandwidth "
                    "used; gpm_sm_util_pct and gpm_dram_bw_util_pct measure those where the GPU has GPM")

POLLED: tuple[Polled, ...] = (
    Polled("sm_clock_mhz", (Call("nvmlDeviceGetClockInfo", ("NVML_CLOCK_SM",)),)),
    Polled("mem_clock_mhz", (Call("nvmlDeviceGetClockInfo", ("NVML_CLOCK_MEM",)),)),
    Polled("power_w", (Call("nvmlDeviceGetFieldValues", ("NVML_FI_DEV_POWER_INSTANT",), _milliwatts, True,
                            POWER_INSTANT_NOTE),
                       Call("nvmlDeviceGetPowerUsage", (), _milliwatts, note=POWER_AVERAGE_NOTE))),
    Polled("temp_c", (Call("nvmlDeviceGetTemperatureV", ("NVML_TEMPERATURE_GPU",)),
                      Call("nvmlDeviceGetTemperature", ("NVML_TEMPERATURE_GPU",)))),
    Polled("mem_used_bytes", (Call("nvmlDeviceGetMemoryInfo", (), lambda mem: int(mem.used)),)),
    Polled("clock_event_reasons", (Call("nvmlDeviceGetCurrentClocksEventReasons", (), int),
                                   Call("nvmlDeviceGetCurrentClocksThrottleReasons", (), int))),
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
# Errors that mean "this driver/GPU does not offer it" when seen before the first success.
ABSENT_ERRORS = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound", "NVMLError_NoPermission")


class NvmlSource:
    """One GPU through nvidia-ml-py; `module` stands in for `pynvml` (tests pass a scripted one)."""

    kind = "nvml"

    def __init__(self, device: int | str, module: Any = None) -> None:
        self.device_index = device
        # an int is NVML's index; a string (UUID, PCI bus id) names the GPU by itself
        self.device = f"nvml:{device}" if isinstance(device, int) else str(device)
        self.unsupported: list[str] = []
        self.notes: list[str] = []
        self._module = module
        self._nvml: Any = None  # the module once NVML is initialised, with the device's handle
        self._handle: Any = None
        self._polled: dict[str, int] = {}  # metric -> index into Polled.calls in use
        self._resolved: set[str] = set()
        self._util_mode: dict[str, str] = {}  # metric -> "buffer" | "poll"
        self._last_seen_us: dict[str, int] = {}
        self._gpm: list[Any] = []  # two sample buffers: [window start, window end]
        self._gpm_prev: tuple[int, int] | None = None  # (t, p) of the window start
        self._gpm_query: Any = None

    # -- setup and teardown ---------------------------------------------------------------
    def open(self) -> str | None:
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
            handle = device_handle(nvml, self.device_index)
        except nvml.NVMLError as exc:
            with suppress(Exception):
                nvml.nvmlShutdown()
            return f"{type(exc).__name__} for device {self.device_index}"
        self._nvml, self._handle = nvml, handle
        self._open_gpm()
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

    def close(self) -> None:
        if self._nvml is not None:
            self._free_gpm()
            with suppress(Exception):
                self._nvml.nvmlShutdown()

    # -- one tick --------------------------------------------------------------------------
    def read(self, t: int, p: int, add: Add, gap: Gap) -> None:
        for spec in POLLED:
            self._read_polled(spec, t, p, add, gap)
        self._read_utilisation(t, p, add, gap)
        self._read_gpm(t, p, add, gap)

    def _failed(self, t: int, p: int, metric: str, exc: BaseException, gap: Gap) -> None:
        """An error before the metric ever worked means 'not offered here'; after, it is a gap."""
        if metric not in self._resolved and self._absent(exc):
            self.unsupported.append(metric)
        else:
            gap(t, p, metric, exc)
        self._resolved.add(metric)

    def _absent(self, exc: BaseException) -> bool:
        if isinstance(exc, AttributeError):  # an nvidia-ml-py without the function
            return True
        return any(isinstance(exc, cls) for cls in (getattr(self._nvml, n, None) for n in ABSENT_ERRORS) if cls)

    def _note(self, text: str | None) -> None:
        if text and text not in self.notes:
            self.notes.append(text)

    def _call(self, call: Call) -> Any:
        nvml = self._nvml
        args = [getattr(nvml, a) for a in call.args]
        if not call.field_value:
            return getattr(nvml, call.function)(self._handle, *args)
        value = getattr(nvml, call.function)(self._handle, args)[0]
        if int(value.nvmlReturn) != nvml.NVML_SUCCESS:  # the call worked, this field did not
            raise nvml.NVMLError(int(value.nvmlReturn))
        field = next((f for name, f in SAMPLE_VALUE_FIELDS if getattr(nvml, name, None) == value.valueType), "uiVal")
        return getattr(value.value, field)

    def _read_polled(self, spec: Polled, t: int, p: int, add: Add, gap: Gap) -> None:
        nvml = self._nvml
        while spec.metric not in self.unsupported:
            index = self._polled.get(spec.metric, 0)
            call = spec.calls[index]
            try:
                raw = self._call(call)
            except (AttributeError, nvml.NVMLError) as exc:
                if spec.metric not in self._resolved and self._absent(exc) and index + 1 < len(spec.calls):
                    self._polled[spec.metric] = index + 1
                    continue
                self._failed(t, p, spec.metric, exc, gap)
                return
            if spec.metric not in self._resolved:
                self._note(call.note)
            self._resolved.add(spec.metric)
            add(t, p, spec.metric, call.convert(raw))
            return

    def _read_utilisation(self, t: int, p: int, add: Add, gap: Gap) -> None:
        nvml, rates = self._nvml, None
        for metric, sample_type, field in UTILISATION:
            if metric in self.unsupported:
                continue
            mode = self._util_mode.get(metric)
            if mode is None:  # the whole buffer (since=0) tells whether the driver keeps one
                self._last_seen_us[metric] = t // 1000  # what it buffered before the run is not the run's
                found = self._read_buffer(metric, sample_type, 0, t - p, add)
                mode = self._util_mode[metric] = "buffer" if found else "poll"
            if mode == "buffer":
                try:
                    self._read_buffer(metric, sample_type, self._last_seen_us[metric], t - p, add)
                except (AttributeError, nvml.NVMLError) as exc:
                    gap(t, p, metric, exc)
                continue
            if rates is None:
                try:
                    rates = nvml.nvmlDeviceGetUtilizationRates(self._handle)
                except (AttributeError, nvml.NVMLError) as exc:
                    rates = exc
            if isinstance(rates, BaseException):
                self._failed(t, p, metric, rates, gap)
            else:
                self._resolved.add(metric)
                self._note(UTILISATION_NOTE)
                add(t, p, metric, float(getattr(rates, field)))

    def _read_buffer(self, metric: str, sample_type: str, since_us: int, offset_ns: int, add: Add) -> bool:
        """Samples the driver buffered after the last one seen; False when it offers no buffer.

        Their timestamps are CPU microseconds since the epoch (NVML docs); perf_ns is
        derived with this tick's time_ns - perf_counter_ns offset.
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
                add(stamp * 1000, stamp * 1000 - offset_ns, metric, float(getattr(sample.sampleValue, field)))
                last = max(last, stamp)
        self._last_seen_us[metric] = last
        self._resolved.add(metric)
        self._note(UTILISATION_NOTE)
        return True

    def _read_gpm(self, t: int, p: int, add: Add, gap: Gap) -> None:
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
                gap(t, p, metric, exc)
            return
        (t0, p0), self._gpm_prev = self._gpm_prev, (t, p)
        self._gpm.reverse()  # this window's end is the next one's start
        try:
            slots = self._gpm_metrics(first, second)
        except nvml.NVMLError as exc:
            for metric, _ in GPM_METRICS:
                gap(t0, p0, metric, exc)
            return
        for (metric, _), slot in zip(GPM_METRICS, slots, strict=True):
            if int(slot.nvmlReturn) != nvml.NVML_SUCCESS:
                gap(t0, p0, metric, type(nvml.NVMLError(int(slot.nvmlReturn))).__name__)
            else:
                add(t0, p0, metric, float(slot.value))

    def _gpm_metrics(self, first: Any, second: Any) -> list[Any]:
        """One nvmlGpmMetricsGet over the window first..second; a slot per GPM_METRICS entry."""
        nvml, query = self._nvml, self._gpm_query
        query.version, query.numMetrics = nvml.NVML_GPM_METRICS_GET_VERSION, len(GPM_METRICS)
        query.sample1, query.sample2 = first, second
        for i, (_, const) in enumerate(GPM_METRICS):
            query.metrics[i].metricId = getattr(nvml, const)
        nvml.nvmlGpmMetricsGet(query)
        return [query.metrics[i] for i in range(len(GPM_METRICS))]


def device_handle(nvml: Any, device: int | str) -> Any:
    """An int is NVML's index; a string is a UUID ('GPU-…', 'MIG-…') or a PCI bus id."""
    if isinstance(device, int):
        return nvml.nvmlDeviceGetHandleByIndex(device)
    if device.startswith(("GPU-", "MIG-")):
        return nvml.nvmlDeviceGetHandleByUUID(device)
    return nvml.nvmlDeviceGetHandleByPciBusId(device)


def max_clocks_mhz(device: int | str | None, module: Any = None) -> dict:
    """NVML's highest SM and memory clocks of a GPU, {"sm": MHz, "mem": MHz}; {} where NVML cannot say.

    A datasheet's compute peak assumes a boost clock; the device's own maximum tells whether
    the table's clock is the one this part can reach.
    """
    nvml = module
    if device is None:
        return {}
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return {}
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return {}
    out: dict = {}
    try:
        handle = device_handle(nvml, device)
        for name, const in (("sm", "NVML_CLOCK_SM"), ("mem", "NVML_CLOCK_MEM")):
            with suppress(AttributeError, nvml.NVMLError):
                out[name] = float(nvml.nvmlDeviceGetMaxClockInfo(handle, getattr(nvml, const)))
    except nvml.NVMLError:
        return {}
    finally:
        with suppress(Exception):
            nvml.nvmlShutdown()
    return out
