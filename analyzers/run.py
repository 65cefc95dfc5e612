"""`Run`: the one object that crosses from capture to analysis.

Plain, schema-versioned data (no tensors, no torch, no analysis), so a run
folder is read, re-rendered and compared on a laptop with pandas alone.
Loading checks every field's type: a hand-edited or truncated run.json gets
one sentence naming the file and the field, never a traceback further on.
"""
from __future__ import annotations

import importlib
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from analyzers.errors import InputError

SCHEMA = "ttft-profile/run"
SCHEMA_VERSION = 1


class RunFormatError(InputError):
    """A run folder that is missing, unreadable, malformed or from an unknown schema."""


@dataclass
class Run:
    """Metadata, TTFT samples and per-repeat component times of one profiled prefill."""

    model: str
    seq_len: int
    batch: int
    dtype: str
    device: str
    device_name: str
    attn: str
    warmup: int
    repeat: int
    # ns from token ids on the host to the first sampled id on the host, one per measured repeat
    ttft_ns: list[int]
    # the first prefill of the process (compilation, allocator growth, caches cold)
    cold_ttft_ns: int
    # rows {repeat, component, layer, detail, ns, calls}; ns is exclusive time
    component_ns: list[dict]
    components_present: list[str]
    model_source: str = "builtin"
    model_origin: str = ""
    random_weights: bool = True
    layers_built: int = 0
    layers_total: int = 0
    padding: dict = field(default_factory=dict)  # {"pad_tokens", "tokens"} of a padded batch (pad_fraction)
    tp: int = 1  # tensor-parallel ranks the model was split across; this run is one rank's (analyzers.cost.tp)
    logits_kept: str = "last"
    sampling: dict = field(default_factory=lambda: {"method": "greedy"})
    timing: str = "host"
    config: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    created: str = ""
    notices: list[str] = field(default_factory=list)
    # the extra prefill run under torch.profiler (not among the timed repeats), and its trace
    profiled_ttft_ns: int | None = None
    profiled_component_ns: list[dict] = field(default_factory=list)
    trace_file: str | None = None
    # the ceilings the roofline divides by (analyzers.cost.ceilings.Ceilings as a dict), if any
    ceilings: dict | None = None
    # telemetry summary (sampling window, caveats, averages per phase and component); samples in nvml.csv
    telemetry: dict | None = None
    telemetry_samples: list[dict] = field(default_factory=list, repr=False)
    # OS contention over the timed repeats (profiler.contention: load, switches, others' CPU share, steal)
    contention: dict | None = None
    # what a float32 matmul computes in (TF32 switches, float32_matmul_precision): fp32 at TF32 beats the fp32 peak
    precision: dict = field(default_factory=dict)
    # NVML's highest SM and memory clocks of the GPU ({"sm": MHz, "mem": MHz}); empty on a CPU or without NVML
    max_clocks_mhz: dict = field(default_factory=dict)
    # host ns inside each range (children excluded) per measured repeat, rows as component_ns: the launch
    # cost of a device-clock run (empty where component_ns is host time already)
    host_component_ns: list[dict] = field(default_factory=list)
    # the device-clock recorder's own bookkeeping: range edges and events per prefill, the host gap under
    # which edges share an event, and per repeat the device wait moved from ranges to host_gap
    recorder_stats: dict = field(default_factory=dict)
    # a chunked prefill (profiler.prefill): tokens per forward (None: one forward), tokens of each chunk,
    # per measured repeat the ns of each chunk (summing to its TTFT: chunk 0 holds the copy in, the last
    # chunk sampling and the copy out), and component_ns rows with a `chunk` key (host clock only)
    chunk: int | None = None
    chunk_tokens: list[int] = field(default_factory=list)
    chunk_ns: list[list[int]] = field(default_factory=list)
    chunk_component_ns: list[dict] = field(default_factory=list)
    path: str | None = None

    # At the prompt and in Jupyter a run shows its summary and its table, through the renderers: loaded
    # by name when shown, since the run layer may not depend on the render layer when it is imported.
    def __repr__(self) -> str:
        return importlib.import_module("analyzers.render.notebook").run_repr(self)

    def _repr_html_(self) -> str:
        return importlib.import_module("analyzers.render.notebook").run_html(self)

    def to_dict(self) -> dict:
        out = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION}
        out.update(asdict(self))
        out.pop("path")
        out.pop("telemetry_samples")  # bulky: they go to nvml.csv
        return out

    @classmethod
    def from_dict(cls, data: object, path: str | None = None, source: str = "run.json") -> Run:
        """Check the schema and every field's type; the error names `source` and the field."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise RunFormatError(f"{source} is not a ttft-profile run (no 'schema' field of {SCHEMA}).")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            newer = isinstance(version, int) and version > SCHEMA_VERSION
            fix = "upgrade ttft-profile to read it" if newer else "use the ttft-profile version that wrote it"
            raise RunFormatError(f"{source} has schema version {version!r} and this ttft-profile reads "
                                 f"{SCHEMA_VERSION}; {fix}.")
        kwargs = {}
        for f in fields(cls):
            if f.name in ("path", "telemetry_samples"):
                continue
            if f.name not in data:
                if f.name in REQUIRED:
                    raise RunFormatError(f"{source} lacks required field '{f.name}'; it was cut short or "
                                         "hand-edited, so profile again.")
                continue
            kwargs[f.name] = _checked(f.name, data[f.name], source)
        _check_samples(kwargs["ttft_ns"], source)
        for name in ("seq_len", "batch", "repeat", "cold_ttft_ns", "tp"):
            if kwargs.get(name, 1) < 1:  # tp is absent from runs written before tensor parallelism
                raise RunFormatError(f"{source}: field '{name}' holds {kwargs[name]}, not a positive number; "
                                     "it was hand-edited, so profile again.")
        return cls(**kwargs, path=path)


# field -> accepted JSON types (None allowed where listed)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "seq_len": (int,), "batch": (int,), "dtype": (str,), "device": (str,),
    "device_name": (str,), "attn": (str,), "warmup": (int,), "repeat": (int,), "ttft_ns": (list,),
    "cold_ttft_ns": (int,), "component_ns": (list,), "components_present": (list,), "model_source": (str,),
    "model_origin": (str,), "random_weights": (bool,), "layers_built": (int,), "layers_total": (int,),
    "tp": (int,), "padding": (dict,),
    "logits_kept": (str,), "sampling": (dict,), "timing": (str,), "config": (dict,), "versions": (dict,),
    "command": (list,), "created": (str,), "notices": (list,), "profiled_ttft_ns": (int, type(None)),
    "profiled_component_ns": (list,), "trace_file": (str, type(None)), "ceilings": (dict, type(None)),
    "telemetry": (dict, type(None)), "contention": (dict, type(None)), "precision": (dict,),
    "max_clocks_mhz": (dict,), "host_component_ns": (list,), "recorder_stats": (dict,),
    "chunk": (int, type(None)), "chunk_tokens": (list,), "chunk_ns": (list,), "chunk_component_ns": (list,),
}
REQUIRED = frozenset(f.name for f in fields(Run) if f.default is MISSING and f.default_factory is MISSING)
ROW_KEYS = ("repeat", "component", "layer", "detail", "ns", "calls")


def _checked(name: str, value: object, source: str) -> object:
    wanted = FIELD_TYPES[name]
    is_bool = isinstance(value, bool)
    if not isinstance(value, wanted) or (is_bool and bool not in wanted):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in wanted)
        raise RunFormatError(f"{source}: field '{name}' holds {json.dumps(value)[:40]}, not {names}; "
                             "it was hand-edited or written by another tool, so profile again.")
    if name in ("component_ns", "profiled_component_ns", "chunk_component_ns"):
        for row in value:
            if not isinstance(row, dict) or any(k not in row for k in ROW_KEYS) or not _number(row["ns"]):
                raise RunFormatError(f"{source}: field '{name}' holds a row that is not "
                                     "{repeat, component, layer, detail, ns, calls}; profile again.")
    if name == "chunk_ns" and not all(isinstance(r, list) and all(_number(t) for t in r) for r in value):
        raise RunFormatError(f"{source}: field 'chunk_ns' holds a row that is not a list of ns per chunk; profile again.")
    if name == "telemetry" and value is not None:
        return _telemetry(value, source)
    return value


def _check_samples(samples: list, source: str) -> None:
    if not samples:
        raise RunFormatError(f"{source} holds no TTFT samples (field 'ttft_ns' is empty); it was cut short or "
                             "hand-edited, so profile again.")
    for t in samples:
        if not _number(t) or not _finite(t) or t <= 0:
            raise RunFormatError(f"{source}: field 'ttft_ns' holds {json.dumps(t)}, not a positive number of "
                                 "nanoseconds; it was hand-edited, so profile again.")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: int | float) -> bool:
    """math.isfinite, except that an int beyond float range (10**400) is no time, not an OverflowError."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _telemetry(summary: dict, source: str) -> dict:
    """JSON has no NaN, so a missing average was saved as null: read it back as NaN."""
    rows = summary.get("attributed", [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise RunFormatError(f"{source}: field 'telemetry.attributed' is not a list of rows; profile again.")
    nan_rows = [{k: (math.nan if v is None and k in ("value", "covered_ms") else v) for k, v in r.items()}
                for r in rows]
    return {**summary, "attributed": nan_rows}


def load_run(path: str | Path) -> Run:
    """Read a run folder (or its run.json) without importing torch."""
    path = Path(path)
    run_json = path / "run.json" if path.is_dir() else path
    if (path / "sweep.json").is_file():
        raise RunFormatError(f"{path} is a sweep folder, not a run; pass one of its runs, such as {path}/n<len>.")
    if not run_json.exists():
        raise RunFormatError(f"{path} is not a run folder: it has no run.json.")
    if run_json.name != "run.json":
        raise RunFormatError(f"{path} is not a run folder or a run.json; pass the run's folder.")
    try:
        data = json.loads(run_json.read_text())
    except (OSError, ValueError) as exc:
        raise RunFormatError(f"{run_json} is not readable JSON ({exc}); the run was cut short.") from None
    except RecursionError:  # json.loads on "[[[[..." deeper than the interpreter's stack
        raise RunFormatError(f"{run_json} nests JSON deeper than Python can parse, so it is not a run; "
                             "profile again.") from None
    return Run.from_dict(data, path=str(run_json.parent), source=str(run_json))
