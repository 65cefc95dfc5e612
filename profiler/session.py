"""One prepared profiling session: checked arguments, a device, a built model.

Profiling one length (`ttft-profile`) and many lengths (`ttft-profile sweep`)
share everything up to the model build, which happens once.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from profiler.errors import UsageError


def _ceilings(device_name: str, device: str, gpu: str | None):
    from analyzers.cost import ceilings as ceiling_table
    from analyzers.cost.hardware import HardwareError

    try:
        return ceiling_table.choose(device_name, device.startswith("cuda"), gpu)[0]
    except HardwareError as exc:
        raise UsageError.from_error(exc) from None


def _nvtx_only_recorder(device: str):
    """Under Nsight Systems CUPTI serves nsys, so torch.profiler stays out entirely."""
    if device.startswith("cuda"):
        from profiler.recorders.cuda import EventRangeRecorder

        return EventRangeRecorder(record_function_on=False)
    from profiler.recorders.host import RangeRecorder

    return RangeRecorder(record_function_on=False)


@dataclass
class Session:
    args: object
    source: object
    config: dict
    built_layers: int
    total_layers: int
    device: str
    dtype: str
    info: object
    ceilings: object
    needed_bytes: int
    notices: list[str] = field(default_factory=list)
    model: object = None

    @classmethod
    def prepare(cls, args, seq_lens: list[int], check_args) -> "Session":
        """Everything that can fail in a sentence, checked before anything slow runs."""
        from analyzers.cost.model_spec import ModelSpec, SpecError
        from profiler import build as builder
        from profiler import catalog
        from profiler import device as dev
        from profiler.sampling import Sampling

        source = catalog.resolve(args.model)
        try:
            ModelSpec.from_config(source.config)  # names a missing field before anything is built
        except SpecError as exc:
            raise UsageError.from_error(exc) from None
        Sampling(temperature=args.temperature, top_p=args.top_p, seed=args.seed)  # checks the sampling flags
        notices = check_args(args, source.config, seq_lens)
        config, built_layers, total_layers = builder.truncated_config(source.config, args.layers)
        device = dev.resolve_device(args.device)
        dtype = dev.resolve_dtype(args.dtype, device, config.get("torch_dtype") or config.get("dtype"))
        dev.check_dtype_runs(dtype, device)
        info = dev.describe(device)
        needed = builder.estimate_bytes(config, max(seq_lens), args.batch, dtype, args.attn)
        builder.check_fits(needed, info.available_memory_bytes, device)
        ceilings = _ceilings(info.name, device, args.gpu)
        if args.gpu and ceilings is not None and not ceilings.peak_flops(dtype):
            have = ", ".join(sorted(ceilings.flops_per_s))
            raise UsageError(f"--gpu {args.gpu} has no {dtype} peak in the hardware table (it has {have}); "
                             "pick another --dtype or --gpu.")
        if source.random_weights:
            where = "built in" if source.kind == "builtin" else source.kind
            notices.append(f"note: {source.name}: no weights found, built from its config ({where}) with random "
                           "weights; timings hold for dense models, the tokens it produces are meaningless.")
        if built_layers != total_layers:
            notices.append(f"note: profiling {built_layers} of {total_layers} layers (--layers {built_layers}); "
                           "the times cover those layers only.")
        return cls(args, source, config, built_layers, total_layers, device, dtype, info, ceilings, needed, notices)

    def announce(self) -> None:
        for line in self.notices:
            print(line, file=sys.stderr)

    def build(self, with_status) -> None:
        from profiler import build as builder
        from profiler.measure import _is_oom

        try:
            self.model = with_status(
                f"building {self.source.name} ({self.built_layers} of {self.total_layers} layers, {self.dtype}) "
                f"on {self.device}", builder.build, self.source, self.args.layers, self.dtype, self.device,
                self.args.attn)
        except Exception as exc:
            if not _is_oom(exc):
                raise
            raise UsageError(
                f"ran out of memory building the model; this run needs roughly {self.needed_bytes / 2**30:.1f} GiB, "
                "so profile fewer layers with --layers K or a shorter --len.") from None

    def profile(self, seq_len: int, folder, progress, command: list[str]):
        """One length: timed repeats, and the traced prefill into `folder` unless switched off."""
        from profiler.measure import profile_prefill
        from profiler.sampling import Sampling

        args = self.args
        sampling = Sampling(temperature=args.temperature, top_p=args.top_p, seed=args.seed)
        recorder = _nvtx_only_recorder(self.device) if args.nvtx_only else None
        try:
            return profile_prefill(
                self.model, seq_len, batch=args.batch, warmup=args.warmup, repeat=args.repeat,
                sampling=sampling, seed=args.seed, progress=progress,
                trace_dir=None if (args.no_trace or args.nvtx_only) else str(folder), recorder=recorder,
                telemetry_interval_ms=args.nvml_interval_ms,
                meta=dict(model=self.source.name, model_source=self.source.kind, model_origin=self.source.origin,
                          random_weights=self.source.random_weights, layers_built=self.built_layers,
                          layers_total=self.total_layers, device_name=self.info.name, config=self.source.config,
                          notices=list(self.notices), command=command,
                          ceilings=self.ceilings.to_dict() if self.ceilings else None),
            )
        except MemoryError as exc:
            raise UsageError(
                f"ran out of memory ({exc}); this run needs roughly {self.needed_bytes / 2**30:.1f} GiB, "
                "so profile fewer layers with --layers K or a shorter --len."
            ) from None
