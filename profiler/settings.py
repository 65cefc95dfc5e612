"""What one profiling session is asked to do: one frozen dataclass, checked once.

The command line builds it from flags, the Python API from keywords; both
get the same checks and the same errors, which name the field (`repeat 0
must be at least 1`). Only the CLI translates field names into flags. Checks
that need the model's config (its length limit, the attention kernels
transformers offers) happen when the session is prepared, still before
anything slow runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from analyzers.component_names import check_rules
from analyzers.errors import ParameterError
from analyzers.lengths import MAX_TOKENS
from analyzers.vocabulary import dtype_name


@dataclass(frozen=True)
class Settings:
    """One profiling session: a model, the prompt lengths, and how to time them."""

    model: str = "tiny-qwen3"
    """A built-in name, a local folder with config.json, or a hub id in the local HF cache."""
    seq_lens: tuple[int, ...] = (2048,)
    """Prompt lengths in tokens; one for a profile, several for a sweep (one model build)."""
    layers: int | None = None
    """Build only the first K decoder layers (None: all); the run says "K of L layers"."""
    batch: int = 1
    """Prompts per prefill."""
    dtype: str = "auto"
    """float32, bfloat16, float16, or auto (the config's dtype on a GPU, float32 on a CPU)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    attn: str = "sdpa"
    """Attention implementation as transformers names it (sdpa, eager, flash_attention_2, ...)."""
    warmup: int = 2
    """Unmeasured prefills before timing; the very first one is reported as the cold TTFT."""
    repeat: int = 7
    """Measured prefills; the table is the median one (nearest rank), p90 from 10 on."""
    temperature: float = 0.0
    """First-token sampling temperature; 0 is greedy."""
    top_p: float = 1.0
    """Nucleus mass for sampling, in (0, 1]."""
    seed: int = 0
    """Seed of the random prompt and of sampling."""
    allow_long: bool = False
    """Allow lengths past the model's max_position_embeddings (with a warning)."""
    gpu: str | None = None
    """Take roofline ceilings from this GPU's datasheet instead of calibration or detection."""
    telemetry_interval_ms: float | None = 10.0
    """Telemetry sampling interval (NVML on a GPU, process CPU and memory on a CPU); None: off."""
    trace: bool = True
    """Run one more prefill under torch.profiler and keep its trace."""
    nvtx_only: bool = False
    """NVTX ranges only, no torch.profiler at all (for Nsight Systems)."""
    allow_missing_weights: bool = False
    """Load a safetensors set that covers only part of the model; the rest stays random (named in a notice)."""
    allow_pickle: bool = False
    """Load a pickle checkpoint (pytorch_model.bin, *.pt), with torch.load(weights_only=True) only."""
    component_rules: tuple[tuple[str, str], ...] = ()
    """(fnmatch pattern on a qualified module name, component) pairs, tried before the built-in rules."""
    tp: int = 1
    """Tensor-parallel ranks (profiler.tp): the model's projections split across this many processes."""
    chunks: tuple[int, ...] = ()
    """Chunked prefill: tokens per forward through the KV cache; one for a profile, several for a chunk sweep."""
    command: tuple[str, ...] = field(default=(), compare=False)
    """The command line that asked for this, recorded in run.json."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "component_rules", check_rules(self.component_rules))  # a dict becomes pairs
        _at_least("batch", self.batch, 1, "", MAX_BATCH)
        _at_least("repeat", self.repeat, 1, "use 5 or more for a stable p50", MAX_REPEAT)
        _at_least("warmup", self.warmup, 0, "use 0 or more", MAX_REPEAT)
        _at_least("tp", self.tp, 1, "pass how many tensor-parallel ranks to run", MAX_TP)
        _at_least("seed", self.seed, 0, "use a seed in 0..2**63-1, as torch.Generator takes", MAX_SEED)
        if self.layers is not None and (not isinstance(self.layers, int) or isinstance(self.layers, bool)):
            # its range depends on the model, and is checked against the config when the session is prepared
            raise ParameterError("layers", self.layers, "is not a whole number", "pass how many decoder layers to build")
        if not self.seq_lens:
            raise ParameterError("seq_lens", [], "is empty", "give at least one prompt length")
        for n in self.seq_lens:
            _at_least("seq_len", n, 1, "pass the prompt length in tokens", MAX_TOKENS)
        for c in self.chunks:
            _at_least("chunk", c, 1, "pass the tokens per chunk, e.g. 512 or 2k", MAX_TOKENS)
        _finite("temperature", self.temperature, "use 0 for greedy or a positive value")
        if self.temperature < 0:
            raise ParameterError("temperature", self.temperature, "is negative", "use 0 for greedy or a positive value")
        _finite("top_p", self.top_p, "use a value such as 0.9")
        if not 0 < self.top_p <= 1:
            raise ParameterError("top_p", self.top_p, "is outside (0, 1]", "use a value such as 0.9")
        interval = self.telemetry_interval_ms
        if interval is not None:
            _finite("telemetry_interval_ms", interval, "use the default 10")
            if not 0 < interval <= MAX_INTERVAL_MS:
                raise ParameterError("telemetry_interval_ms", interval, f"is outside (0, {MAX_INTERVAL_MS:g}]",
                                     "use the default 10")
        for name in ("allow_long", "allow_missing_weights", "allow_pickle", "trace", "nvtx_only"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(name, getattr(self, name), "is not True or False", "pass a bool")
        if self.dtype != "auto" and dtype_name(self.dtype) is None:
            raise ParameterError("dtype", self.dtype, "is not known", "use one of float32, bfloat16, float16 or auto")

    @property
    def seq_len(self) -> int:
        """The single length of a profile (the first of a sweep's)."""
        return self.seq_lens[0]

    @property
    def chunk(self) -> int | None:
        """The chunk size of a profile (None: unchunked)."""
        return self.chunks[0] if self.chunks else None

    @property
    def keeps_trace(self) -> bool:
        """A torch.profiler trace is written unless switched off or Nsight owns the profiler."""
        return self.trace and not self.nvtx_only


# Stated bounds: past them a value is a typo, not a profile (torch.Generator takes seeds below 2**63 here,
# lengths are bounded by analyzers.lengths.MAX_TOKENS, and a telemetry interval over a minute samples nothing).
MAX_SEED = 2**63 - 1
MAX_BATCH = 2**16
MAX_TP = 1024
MAX_REPEAT = 100_000
MAX_INTERVAL_MS = 60_000.0


def _at_least(name: str, value: int, low: int, fix: str, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParameterError(name, value, "is not a whole number", fix or f"pass an integer of at least {low}")
    if value < low:
        problem = "is negative" if low == 0 else f"must be at least {low}"
        raise ParameterError(name, value, problem, fix or f"pass an integer of at least {low}")
    if high is not None and value > high:
        raise ParameterError(name, value, f"is above {high:,}", fix or f"pass an integer of at most {high:,}")


def _finite(name: str, value: object, fix: str) -> None:
    """NaN compares false with everything, so a range check alone would let it through: refuse it first."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(name, value, "is not a number", fix)
    if not math.isfinite(value):
        raise ParameterError(name, value, "is not a finite number", fix)
