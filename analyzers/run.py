"""`Run`: the one object that crosses from capture to analysis.

Plain data only (no tensors, no torch), so that a run folder can be read,
re-rendered and compared on a laptop with pandas alone.
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from analyzers import atomic
from analyzers.jsonout import dumps

SCHEMA = "ttft-profile/run"
SCHEMA_VERSION = 1


class RunFormatError(ValueError):
    """A run folder that is missing, unreadable or from an unknown schema."""


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
    path: str | None = None

    def breakdown(self):
        """Per-component table of the median repeat (see analyzers.breakdown)."""
        from analyzers.breakdown import breakdown

        return breakdown(self)

    def to_dict(self) -> dict:
        out = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION}
        out.update(asdict(self))
        out.pop("path")
        out.pop("telemetry_samples")  # bulky: they go to nvml.csv
        return out

    @classmethod
    def from_dict(cls, data: dict, path: str | None = None) -> "Run":
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise RunFormatError("run.json is not a ttft-profile run (no 'schema' field of ttft-profile/run).")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RunFormatError(
                f"run.json has schema version {version}, this ttft-profile reads {SCHEMA_VERSION}; "
                "use the ttft-profile version that wrote it."
            )
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known and k not in ("path", "telemetry_samples")}
        try:
            run = cls(**kwargs, path=path)
        except TypeError as exc:
            raise RunFormatError(f"run.json lacks required fields ({exc}); it was cut short or hand-edited.") from None
        if not run.ttft_ns or not isinstance(run.ttft_ns, list):
            raise RunFormatError("run.json holds no TTFT samples; it was cut short or hand-edited, so profile again.")
        return run

    def save(self, folder: str | Path) -> Path:
        """Write run.json, breakdown.csv and breakdown_layers.csv, each atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        from analyzers.breakdown import layer_breakdown

        atomic.write_text(folder / "breakdown.csv", _csv(self.breakdown()))
        atomic.write_text(folder / "breakdown_layers.csv", _csv(layer_breakdown(self)))
        if self.ceilings:
            from analyzers.cost.roofline import run_roofline

            try:
                table = run_roofline(self)
            except ValueError as exc:  # a config the FLOP model cannot read: keep the run, say why
                self.notices.append(f"no roofline: {exc}")
            else:
                atomic.write_text(folder / "roofline.csv", _csv(table))
        if self.telemetry_samples:
            from analyzers.telemetry.samples import write_samples_csv

            write_samples_csv(self.telemetry_samples, folder / "nvml.csv")
        # run.json last: its presence marks a complete folder.
        atomic.write_text(folder / "run.json", dumps(self.to_dict()) + "\n")
        self.path = str(folder)
        return folder


def _csv(frame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


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
    return Run.from_dict(data, path=str(run_json.parent))
