"""A scripted stand-in for nvidia-ml-py (`pynvml`), so the sampler is tested without a GPU.

Names, constants and the error hierarchy are those of nvidia-ml-py
(tests/test_telemetry.py checks them against the installed module), so code
that works here calls the real library the same way. Values and failures are
scripted per call: the n-th call of a function returns the n-th scripted value
(the last one repeats) or raises the error scripted for call n.
"""
from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
ERROR_CLASS_NAMES = {
    NVML_ERROR_UNINITIALIZED: "NVMLError_Uninitialized", NVML_ERROR_INVALID_ARGUMENT: "NVMLError_InvalidArgument",
    NVML_ERROR_NOT_SUPPORTED: "NVMLError_NotSupported", NVML_ERROR_NO_PERMISSION: "NVMLError_NoPermission",
    NVML_ERROR_NOT_FOUND: "NVMLError_NotFound", NVML_ERROR_DRIVER_NOT_LOADED: "NVMLError_DriverNotLoaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVMLError_LibraryNotFound",
    NVML_ERROR_FUNCTION_NOT_FOUND: "NVMLError_FunctionNotFound", NVML_ERROR_GPU_IS_LOST: "NVMLError_GpuIsLost",
    NVML_ERROR_UNKNOWN: "NVMLError_Unknown",
}


class NVMLError(Exception):
    """As in pynvml: NVMLError(code) builds the subclass for that code."""

    _valClassMapping: dict[int, type] = {}

    def __new__(cls, value: int):
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return ERROR_CLASS_NAMES.get(self.value, f"NVML Error with code {self.value}")


for _code, _name in ERROR_CLASS_NAMES.items():
    _cls = type(_name, (NVMLError,), {"__new__": (lambda code: lambda cls, *a: NVMLError.__new__(cls, code))(_code)})
    NVMLError._valClassMapping[_code] = _cls
    globals()[_name] = _cls

NVMLError_NotSupported = NVMLError._valClassMapping[NVML_ERROR_NOT_SUPPORTED]
NVMLError_NotFound = NVMLError._valClassMapping[NVML_ERROR_NOT_FOUND]
NVMLError_LibraryNotFound = NVMLError._valClassMapping[NVML_ERROR_LIBRARY_NOT_FOUND]
NVMLError_FunctionNotFound = NVMLError._valClassMapping[NVML_ERROR_FUNCTION_NOT_FOUND]
NVMLError_NoPermission = NVMLError._valClassMapping[NVML_ERROR_NO_PERMISSION]
NVMLError_Unknown = NVMLError._valClassMapping[NVML_ERROR_UNKNOWN]

CONSTANTS = dict(
    NVML_SUCCESS=NVML_SUCCESS, NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2, NVML_TEMPERATURE_GPU=0,
    NVML_GPU_UTILIZATION_SAMPLES=1, NVML_MEMORY_UTILIZATION_SAMPLES=2,
    NVML_VALUE_TYPE_DOUBLE=0, NVML_VALUE_TYPE_UNSIGNED_INT=1, NVML_VALUE_TYPE_UNSIGNED_LONG=2,
    NVML_VALUE_TYPE_UNSIGNED_LONG_LONG=3, NVML_VALUE_TYPE_SIGNED_LONG_LONG=4, NVML_VALUE_TYPE_SIGNED_INT=5,
    NVML_VALUE_TYPE_UNSIGNED_SHORT=6,
    NVML_GPM_METRIC_SM_UTIL=2, NVML_GPM_METRIC_SM_OCCUPANCY=3, NVML_GPM_METRIC_ANY_TENSOR_UTIL=5,
    NVML_GPM_METRIC_DRAM_BW_UTIL=10, NVML_GPM_METRIC_MAX=477, NVML_GPM_METRICS_GET_VERSION=1,
    NVML_GPM_SUPPORT_VERSION=1, NVML_FI_DEV_POWER_INSTANT=186, NVML_FI_DEV_POWER_AVERAGE=185,
)
POWER_INSTANT = CONSTANTS["NVML_FI_DEV_POWER_INSTANT"]
SM, MEM = CONSTANTS["NVML_CLOCK_SM"], CONSTANTS["NVML_CLOCK_MEM"]
GPU_SAMPLES, MEM_SAMPLES = CONSTANTS["NVML_GPU_UTILIZATION_SAMPLES"], CONSTANTS["NVML_MEMORY_UTILIZATION_SAMPLES"]
GPM_IDS = {name: CONSTANTS[name] for name in CONSTANTS if name.startswith("NVML_GPM_METRIC_") and name != "NVML_GPM_METRIC_MAX"}


class GpmMetricsGet:
    """Shape of pynvml.c_nvmlGpmMetricsGet_t: the sampler fills ids, NVML fills values."""

    def __init__(self) -> None:
        self.version = self.numMetrics = 0
        self.sample1 = self.sample2 = None
        self.metrics = [SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0) for _ in range(8)]


DEFAULTS: dict[Any, Any] = {
    ("nvmlDeviceGetClockInfo", SM): 1980, ("nvmlDeviceGetClockInfo", MEM): 2619,
    "nvmlDeviceGetPowerUsage": 350_000,  # mW
    ("nvmlDeviceGetFieldValues", POWER_INSTANT): 350_000,  # mW
    ("nvmlDeviceGetMaxClockInfo", SM): 1980, ("nvmlDeviceGetMaxClockInfo", MEM): 2619,
    "nvmlDeviceGetTemperatureV": 61, "nvmlDeviceGetTemperature": 61,
    "nvmlDeviceGetMemoryInfo": 8 * 2**30,  # used bytes
    "nvmlDeviceGetCurrentClocksEventReasons": 0x4, "nvmlDeviceGetCurrentClocksThrottleReasons": 0x4,
    "nvmlDeviceGetUtilizationRates": (97, 41),
    "gpm": {2: 80.0, 3: 35.0, 5: 60.0, 10: 70.0},  # metric id -> value per nvmlGpmMetricsGet call
}


class FakeNVML:
    """One fake driver with one or more GPUs.

    values: key -> value, or list of values per call; a key is a function name, or
      (name, clock type) for nvmlDeviceGetClockInfo and nvmlDeviceGetMaxClockInfo, or
      ("nvmlDeviceGetFieldValues", field id); "gpm" maps metric id -> value(s).
    fail: key -> error code on every call, or {call index: code}. "nvmlDeviceGetFieldValues" fails
      the whole call; ("nvmlDeviceGetFieldValues", field id) sets that field's nvmlReturn, as the
      driver does for a field it does not have.
    missing: function names the module lacks (AttributeError, as an older nvidia-ml-py).
    buffer: sample type -> [(timestamp µs, value)] the driver keeps, or None: no sample buffer.
    gpm: whether nvmlGpmQueryDeviceSupport says the device supports GPM.
    """

    def __init__(self, *, values: dict | None = None, fail: dict | None = None, missing: tuple[str, ...] = (),
                 buffer: dict[int, list[tuple[int, int]]] | None = None, gpm: bool = True,
                 init_error: int | None = None, device_count: int = 1) -> None:
        self.values = {**DEFAULTS, **(values or {})}
        self.fail = dict(fail or {})
        self.missing = set(missing)
        self.buffer = buffer
        self.gpm_supported = gpm
        self.init_error = init_error
        self.device_count = device_count
        self.calls: Counter = Counter()
        self.initialised = 0
        self.allocated: list[SimpleNamespace] = []
        self.freed: list[SimpleNamespace] = []

    def __getattribute__(self, name: str) -> Any:
        if name != "missing" and name in object.__getattribute__(self, "missing"):
            raise AttributeError(f"module 'pynvml' has no attribute '{name}'")
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name.startswith("NVMLError"):
            return globals()[name]
        return object.__getattribute__(self, name)

    c_nvmlGpmMetricsGet_t = GpmMetricsGet

    def _call(self, key: Any) -> Any:
        n = self.calls[key]
        self.calls[key] += 1
        failure = self.fail.get(key)
        code = failure.get(n) if isinstance(failure, dict) else failure
        if code is not None:
            raise NVMLError(code)
        return _nth(self.values.get(key), n)

    # -- library ---------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[str, int]:
        if not 0 <= index < self.device_count:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return ("handle", index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> tuple[str, str]:
        return ("handle", uuid)

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> tuple[str, str]:
        return ("handle", bus_id)

    # -- polled readings -------------------------------------------------------------------
    def nvmlDeviceGetClockInfo(self, handle: Any, clock_type: int) -> int:
        return self._call(("nvmlDeviceGetClockInfo", clock_type))

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return self._call("nvmlDeviceGetPowerUsage")

    def nvmlDeviceGetFieldValues(self, handle: Any, field_ids: list) -> list[SimpleNamespace]:
        """As pynvml: one nvmlFieldValue_t per id ((id, scope) pairs allowed); a field's failure is in its struct."""
        self._call("nvmlDeviceGetFieldValues")
        out = []
        for field_id in field_ids:
            field_id, scope = field_id if isinstance(field_id, tuple) else (field_id, 0)
            try:
                value, code = self._call(("nvmlDeviceGetFieldValues", field_id)), NVML_SUCCESS
            except NVMLError as exc:
                value, code = 0, exc.value
            out.append(SimpleNamespace(fieldId=field_id, scopeId=scope, timestamp=0, latencyUsec=0,
                                       valueType=CONSTANTS["NVML_VALUE_TYPE_UNSIGNED_INT"], nvmlReturn=code,
                                       value=SimpleNamespace(uiVal=value)))
        return out

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, clock_type: int) -> int:
        return self._call(("nvmlDeviceGetMaxClockInfo", clock_type))

    def nvmlDeviceGetTemperatureV(self, handle: Any, sensor: int, version: int = 0x100000C) -> int:
        return self._call("nvmlDeviceGetTemperatureV")

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        return self._call("nvmlDeviceGetTemperature")

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> SimpleNamespace:
        used = self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=141 * 2**30, free=141 * 2**30 - used, used=used)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return self._call("nvmlDeviceGetCurrentClocksEventReasons")

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int:
        return self._call("nvmlDeviceGetCurrentClocksThrottleReasons")

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> SimpleNamespace:
        gpu, memory = self._call("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu, memory=memory)

    def nvmlDeviceGetSamples(self, handle: Any, sampling_type: int, time_stamp: int) -> tuple[int, list]:
        self._call("nvmlDeviceGetSamples")
        if self.buffer is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        fresh = [(ts, v) for ts, v in self.buffer.get(sampling_type, []) if ts > time_stamp]
        if not fresh:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return (CONSTANTS["NVML_VALUE_TYPE_UNSIGNED_INT"],
                [SimpleNamespace(timeStamp=ts, sampleValue=SimpleNamespace(uiVal=v)) for ts, v in fresh])

    # -- GPM -------------------------------------------------------------------------------
    def nvmlGpmQueryDeviceSupport(self, handle: Any) -> SimpleNamespace:
        return SimpleNamespace(version=1, isSupportedDevice=int(self.gpm_supported))

    def nvmlGpmSampleAlloc(self) -> SimpleNamespace:
        sample = SimpleNamespace(taken=None)
        self.allocated.append(sample)
        return sample

    def nvmlGpmSampleFree(self, sample: SimpleNamespace) -> None:
        self.freed.append(sample)

    def nvmlGpmSampleGet(self, handle: Any, sample: SimpleNamespace) -> SimpleNamespace:
        sample.taken = self.calls["nvmlGpmSampleGet"]
        self._call("nvmlGpmSampleGet")
        return sample

    def nvmlGpmMetricsGet(self, query: GpmMetricsGet) -> GpmMetricsGet:
        n = self.calls["nvmlGpmMetricsGet"]
        self._call("nvmlGpmMetricsGet")
        if query.sample1 is query.sample2 or query.sample1.taken is None or query.sample2.taken is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        per_metric = self.fail.get("gpm", {})
        for slot in query.metrics[:query.numMetrics]:
            code = per_metric.get((n, slot.metricId))
            slot.nvmlReturn = code or NVML_SUCCESS
            slot.value = 0.0 if code else float(_nth(self.values["gpm"][slot.metricId], n))
        return query


def _nth(value: Any, n: int) -> Any:
    if isinstance(value, list):
        return value[min(n, len(value) - 1)]
    return value
