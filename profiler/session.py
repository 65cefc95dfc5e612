"""One prepared profiling session: checked settings, a device, a built model.

Profiling one length (`ttft-profile`) and many lengths (`ttft-profile sweep`)
share everything up to the model build, which happens once. Every check that
can fail in a sentence runs in `prepare`, before anything slow.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from analyzers.errors import InputError, ParameterError
from profiler.settings import Settings

_PAGED = "paged"  # paged attention needs a paged KV cache that a prefill profile does not build


def attention_implementations() -> list[str]:
    """Attention implementations transformers offers for a prefill profile."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return sorted({"eager", *(k for k in ALL_ATTENTION_FUNCTIONS.valid_keys() if not k.startswith(_PAGED))})


def check_against_config(settings: Settings, config: dict) -> list[str]:
    """What needs the model's config: the attention kernel and the length limit. Returns warning lines."""
    known = attention_implementations()
    if settings.attn not in known:
        raise ParameterError("attn", settings.attn, "is not an attention implementation transformers knows",
                             f"use one of {', '.join(known)}")
    limit = config.get("max_position_embeddings")
    notices = []
    for n in settings.seq_lens:
        if limit and n > int(limit):
            if not settings.allow_long:
                raise ParameterError("seq_len", n, f"is above this model's max_position_embeddings ({limit})",
                                     "use a shorter `seq_len`, or allow_long (--allow-long) to run past it anyway")
            notices.append(f"warning: length {n} is past max_position_embeddings ({limit}); "
                           "positions beyond it are outside what the model was trained on.")
    return notices


def _ceilings(settings: Settings, device_name: str, device: str, dtype: str):
    import torch

    from analyzers.cost import ceilings as ceiling_table

    on_gpu = device.startswith("cuda")
    # measured ceilings hold for the thread count and dtype they were measured with (a GPU's do not depend on threads)
    chosen, said = ceiling_table.choose(device_name, on_gpu, settings.gpu,
                                        threads=None if on_gpu else torch.get_num_threads(), dtype=dtype)
    if settings.gpu and chosen is not None and not chosen.peak_flops(dtype):
        have = ", ".join(sorted(chosen.flops_per_s))
        raise ParameterError("gpu", settings.gpu, f"has no {dtype} peak in the hardware table (it has {have})",
                             "pick another `dtype` or `gpu`")
    stale = ceiling_table.stale_note()
    return chosen, (f"note: {stale}." if chosen is None and stale and stale in said else None)


def _notices(source, built: int, total: int) -> list[str]:
    out = []
    if source.random_weights:
        where = "built in" if source.kind == "builtin" else source.kind
        out.append(f"note: {source.name}: no weights found, built from its config ({where}) with random "
                   "weights; timings hold for dense models, the tokens it produces are meaningless.")
    if built != total:
        out.append(f"note: profiling {built} of {total} layers (--layers {built}); the times cover those layers only.")
    return out


@dataclass
class Session:
    settings: Settings
    source: object  # profiler.catalog.ModelSource
    built_layers: int
    total_layers: int
    device: str
    dtype: str
    info: object  # profiler.device.DeviceInfo
    ceilings: object  # analyzers.cost.ceilings.Ceilings or None
    needed_bytes: int
    notices: list[str] = field(default_factory=list)
    model: object = None

    @classmethod
    def prepare(cls, settings: Settings) -> Session:
        """Everything that can fail in a sentence, checked before anything slow runs."""
        from analyzers.cost.model_spec import ModelSpec
        from profiler import build as builder
        from profiler import catalog
        from profiler import device as dev

        source = catalog.resolve(settings.model)
        ModelSpec.from_config(source.config)  # names a missing field before anything is built
        notices = check_against_config(settings, source.config)
        config, built, total = builder.truncated_config(source.config, settings.layers)
        device = dev.resolve_device(settings.device)
        dev.use_device(device)  # cuda:N is the current device for the whole session: events, syncs, allocations
        dtype = dev.resolve_dtype(settings.dtype, device, config.get("torch_dtype") or config.get("dtype"))
        dev.check_dtype_runs(dtype, device)
        info = dev.describe(device)
        needed = builder.estimate_bytes(config, max(settings.seq_lens), settings.batch, dtype, settings.attn, device)
        builder.check_fits(needed, info.available_memory_bytes, device,
                           builder.sdpa_math_fallback(config, dtype, settings.attn, device))
        ceilings, ceilings_note = _ceilings(settings, info.name, device, dtype)
        fallback = builder.math_fallback_notice(config, dtype, settings.attn, device)
        return cls(settings, source, built, total, device, dtype, info, ceilings, needed,
                   notices + _notices(source, built, total) + [n for n in (fallback, ceilings_note) if n])

    def announce(self) -> None:
        """Notices go to stderr, so `--json` keeps stdout to JSON alone (notes not at all with --quiet)."""
        from profiler.quiet import say

        for line in self.notices:
            say(line)

    @property
    def build_message(self) -> str:
        return (f"building {self.source.name} ({self.built_layers} of {self.total_layers} layers, {self.dtype}) "
                f"on {self.device}")

    def out_of_memory(self, what: str) -> InputError:
        return InputError(f"ran out of memory {what}; this run needs roughly {self.needed_bytes / 2**30:.1f} GiB, "
                          "so profile fewer layers (`layers`) or a shorter `seq_len`.")

    def build(self) -> None:
        from profiler import build as builder
        from profiler.errors import is_oom

        s = self.settings
        try:
            self.model = builder.build(self.source, s.layers, self.dtype, self.device, s.attn,
                                       allow_missing_weights=s.allow_missing_weights, allow_pickle=s.allow_pickle,
                                       notices=self.notices)
        except Exception as exc:
            if not is_oom(exc):
                raise
            raise self.out_of_memory("building the model") from None

    def profile(self, seq_len: int, folder, progress=None, chunk: int | None = None):
        """One length: timed repeats, and the traced prefill into `folder` unless switched off. `chunk` overrides
        the settings' chunk size (a chunk sweep; 0: unchunked)."""
        from profiler.measure import ModelOrigin, profile_prefill
        from profiler.recorders import nvtx_only_recorder
        from profiler.sampling import Sampling

        s = self.settings
        origin = ModelOrigin(name=self.source.name, source=self.source.kind, origin=self.source.origin,
                             random_weights=self.source.random_weights, layers_total=self.total_layers,
                             config=self.source.config, notices=tuple(self.notices), command=s.command,
                             ceilings=self.ceilings.to_dict() if self.ceilings else None)
        try:
            return profile_prefill(
                self.model, seq_len, batch=s.batch, warmup=s.warmup, repeat=s.repeat,
                sampling=Sampling(temperature=s.temperature, top_p=s.top_p, seed=s.seed), seed=s.seed,
                progress=progress, trace_dir=str(folder) if s.keeps_trace else None,
                recorder=nvtx_only_recorder(self.device) if s.nvtx_only else None,
                telemetry_interval_ms=s.telemetry_interval_ms, origin=origin, component_rules=s.component_rules,
                chunk=(chunk or None) if chunk is not None else s.chunk)
        except MemoryError as exc:
            raise self.out_of_memory(f"({exc})") from None
