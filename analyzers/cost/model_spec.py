"""`ModelSpec`: the architecture facts of a decoder-only LM, read from its HF config.

It feeds the FLOP and byte model (`analyzers.cost.flops`), so every field is one
that changes a cost. Facts that a config leaves implicit (Qwen2 always has a
q/k/v bias, Qwen3 normalises q and k per head, Gemma ties its embeddings)
live in the tables below, keyed by `model_type`, and mirror transformers'
own defaults for those model types.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from analyzers.cost.families import canonical, falcon_heads, family_facts
from analyzers.errors import InputError

FULL, SLIDING = "full_attention", "sliding_attention"

# model_type -> how q/k are normalised: "head" (one RMSNorm of h weights shared by
# every head, Qwen3/Gemma-3) or "full" (one over all H·h / K·h, OLMo-2).
QK_NORM: dict[str, str] = {
    "qwen3": "head",
    "qwen3_moe": "head",
    "qwen3_next": "head",
    "gemma3": "head",
    "gemma3_text": "head",
    "olmo2": "full",
    "olmo3": "full",
    "olmoe": "full",
}

# model_types whose q/k/v projections carry a bias whatever `attention_bias` says.
QKV_BIAS_ALWAYS = frozenset({"qwen2", "qwen2_vl", "qwen2_5_vl"})
# model_types whose o_proj never has a bias, even with `attention_bias` set.
NO_O_BIAS = frozenset({"qwen2", "qwen2_vl", "qwen2_5_vl", "qwen2_moe", "mistral", "mixtral", "phi3"})
# model_types that tie input and output embeddings unless the config says otherwise.
TIED_BY_DEFAULT = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text"})
# Architectures with one fused q/k/v matmul (one call a layer instead of three).
FUSED_QKV = frozenset({"phi3"})
# head_dim defaults of config classes that do not derive it from hidden // heads.
HEAD_DIM_DEFAULT: dict[str, int] = {"qwen3": 128, "qwen3_moe": 128, "gemma": 256, "gemma2": 256, "gemma3_text": 256}
# model_types where `use_sliding_window` gates the window and defaults to off.
WINDOW_NEEDS_FLAG = frozenset({"qwen2", "qwen3", "qwen2_moe", "qwen3_moe"})
# The window a config class assumes when the key is absent.
WINDOW_DEFAULT: dict[str, int] = {m: 4096 for m in ("mistral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "gemma2")}


class SpecError(InputError):
    """A config that lacks, or contradicts, a fact the cost model needs."""


@dataclass(frozen=True)
class ModelSpec:
    """Architecture facts of a decoder-only causal LM (GQA, gated MLP, optional MoE)."""

    model_type: str
    layers: int
    hidden: int  # d
    heads: int  # H, query heads
    kv_heads: int  # K
    head_dim: int  # h
    intermediate: int  # I, dense MLP width (0 when every layer is MoE and the config gives none)
    vocab: int  # V
    tied_embeddings: bool = False
    qk_norm: bool = False
    qk_norm_per_head: bool = True  # False: the norm spans all heads (H·h weights), as in OLMo-2
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    fused_qkv: bool = False
    sliding_window: int | None = None  # keys a query may see on a sliding layer, itself included
    layer_types: tuple[str, ...] = ()  # per layer, FULL or SLIDING
    num_experts: int = 0  # E routed experts; 0 for a dense model
    experts_per_token: int = 0  # top-k
    expert_intermediate: int = 0  # width of one routed expert's MLP
    shared_expert_intermediate: int = 0  # an always-on expert (Qwen2-MoE, DeepSeek), 0 if none
    shared_expert_gate: bool = False  # a d -> 1 sigmoid gate on the shared expert (Qwen2-MoE)
    moe_layers: tuple[bool, ...] = ()  # per layer, True where the MLP is the MoE block
    max_position_embeddings: int | None = None
    dtype: str | None = None  # the config's torch_dtype, for reference only
    # Shapes beyond Llama's (analyzers.cost.families): GPT-2, GPT-NeoX, Falcon, Phi, GPT-J, OPT.
    gated_mlp: bool = True  # False: two matrices with an activation between (fc1 -> act -> fc2)
    norm_bias: bool = False  # LayerNorm with weight and bias instead of RMSNorm
    norms_per_layer: int = 2  # 1 where a parallel block feeds attention and MLP from one norm
    rotary_dim: int | None = None  # features of each head RoPE rotates; None = all, 0 = no RoPE
    learned_positions: int = 0  # rows of a learned absolute position table (GPT-2, OPT)
    lm_head_bias: bool = False
    parallel_block: bool = False  # attention and MLP read the same input and add into one residual

    def __post_init__(self) -> None:
        # A spec written by hand may leave the per-layer tuples out: every layer then has the same
        # attention type, and MoE (if any) everywhere.
        if not self.layer_types:
            kind = SLIDING if self.sliding_window else FULL
            object.__setattr__(self, "layer_types", (kind,) * self.layers)
        if self.num_experts and not self.moe_layers:
            object.__setattr__(self, "moe_layers", (True,) * self.layers)
        for name in ("layer_types", "moe_layers"):
            given = getattr(self, name)
            if given and len(given) != self.layers:
                raise SpecError(f"{name} has {len(given)} entries for {self.layers} layers; give one per layer.")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelSpec:
        """Parse a Hugging Face `config.json` dict; raise `SpecError` naming a missing field."""
        config = _unwrap(config)
        model_type = str(config.get("model_type") or "")
        _core_fields(config, model_type)
        layers = _int(config, "num_hidden_layers")
        hidden = _int(config, "hidden_size")
        heads = _int(config, "num_attention_heads")
        vocab = _int(config, "vocab_size")
        kv_heads = _int(config, "num_key_value_heads", default=heads)
        norms = None
        if model_type == "falcon":
            kv_heads, norms = falcon_heads(config, heads)
        if heads % kv_heads:
            raise SpecError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}; "
                            "fix the config.")
        head_dim = _head_dim(config, model_type, hidden, heads)
        family = family_facts(config, model_type, hidden, head_dim)
        experts, top_k, expert_width, shared, moe_layers = _moe(config, layers)
        dense_needed = not all(moe_layers) if experts else True
        intermediate = _int(config, "intermediate_size",
                            default=family.get("default_intermediate", None if dense_needed else 0),
                            minimum=1 if dense_needed else 0)
        if experts and not expert_width:
            expert_width = intermediate  # Mixtral: experts have the dense width
            if not expert_width:
                raise SpecError("the config has no moe_intermediate_size (nor an intermediate_size its experts "
                                "could share); pass the model's full config.json.")
        qk_style = QK_NORM.get(model_type)
        if "use_qk_norm" in config:  # Cohere, GLM-4-MoE: an explicit switch wins over the table
            qk_style = (qk_style or "head") if config["use_qk_norm"] else None
        window, layer_types = _sliding(config, model_type, layers)
        max_positions = _int(config, "max_position_embeddings", default=0, minimum=0) or None
        return cls(
            model_type=model_type,
            layers=layers,
            hidden=hidden,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            intermediate=intermediate,
            vocab=vocab,
            qk_norm=qk_style is not None,
            qk_norm_per_head=qk_style != "full",
            **_bias_fields(config, model_type, family),
            sliding_window=window,
            layer_types=layer_types,
            num_experts=experts,
            experts_per_token=top_k,
            expert_intermediate=expert_width,
            shared_expert_intermediate=shared,
            shared_expert_gate=bool(shared) and model_type == "qwen2_moe",
            moe_layers=moe_layers,
            max_position_embeddings=max_positions,
            dtype=config.get("torch_dtype") or config.get("dtype"),
            **_shape_fields(family, norms, max_positions),
        )

    def window(self, layer: int) -> int | None:
        """The sliding window of `layer`, or None where it attends to the whole prefix."""
        return self.sliding_window if self.layer_types[layer] == SLIDING else None

    def is_moe(self, layer: int) -> bool:
        return bool(self.moe_layers) and self.moe_layers[layer]


_MISSING = object()


def _unwrap(config: Any) -> dict[str, Any]:
    """The language model's config with standard key names (GPT-2's n_embd becomes hidden_size, ...)."""
    if not isinstance(config, dict):
        raise SpecError(f"the config is a {type(config).__name__}, not a dict; pass the parsed config.json.")
    if "hidden_size" not in config and isinstance(config.get("text_config"), dict):
        # Multimodal wrappers (Gemma-3, Qwen2-VL) keep the language model's facts one level down.
        outer_type = config.get("model_type")
        config = dict(config["text_config"])
        config.setdefault("model_type", outer_type)
    return canonical(config)


CORE_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")


def _core_fields(config: dict[str, Any], model_type: str) -> None:
    """Name every missing core field at once; several missing means an architecture spelt another way."""
    missing = [k for k in CORE_FIELDS if config.get(k) is None]
    if len(missing) < 2:
        return  # one missing field is named by _int, in its own words
    raise SpecError(f"the config (model_type {model_type or 'unset'!r}) has no {', '.join(missing)} under any name "
                    "ttft-profile knows (Llama's, or GPT-2's n_layer/n_embd/n_head, Falcon's, OPT's); add them to "
                    "config.json under these names, and if its modules are not named like Llama's or GPT-2's, "
                    "name them with --component-rule MODULE_PATTERN=COMPONENT.")


def _bias_fields(config: dict[str, Any], model_type: str, family: dict[str, Any]) -> dict[str, Any]:
    """Biases, q/k/v fusion and tying: the family's facts where it has them, else the Llama-style keys."""
    attention_bias = bool(config.get("attention_bias", False))
    return dict(
        tied_embeddings=bool(config.get("tie_word_embeddings",
                                        family.get("tied_default", model_type in TIED_BY_DEFAULT))),
        qkv_bias=family.get("qkv_bias", attention_bias or bool(config.get("qkv_bias", False))
                            or model_type in QKV_BIAS_ALWAYS),
        o_bias=family.get("o_bias", attention_bias and model_type not in NO_O_BIAS),
        mlp_bias=family.get("mlp_bias", bool(config.get("mlp_bias", False))),
        fused_qkv=family.get("fused_qkv", model_type in FUSED_QKV),
    )


def _shape_fields(family: dict[str, Any], norms: int | None, max_positions: int | None) -> dict[str, Any]:
    """The ModelSpec fields beyond Llama's, from `families.family_facts` (defaults: a Llama block)."""
    return dict(
        gated_mlp=family.get("gated_mlp", True),
        norm_bias=family.get("norm_bias", False),
        norms_per_layer=norms or family.get("norms_per_layer", 2),
        rotary_dim=family.get("rotary_dim"),
        learned_positions=_positions(family.get("learned_positions"), max_positions),
        lm_head_bias=family.get("lm_head_bias", False),
        parallel_block=family.get("parallel_block", False),
    )


def _positions(offset: int | None, max_positions: int | None) -> int:
    """Rows of a learned position table: max_position_embeddings plus the family's offset (OPT: 2)."""
    if offset is None:
        return 0
    if not max_positions:
        raise SpecError("the config has no max_position_embeddings (n_positions); its learned position table "
                        "needs it, so pass the model's full config.json.")
    return max_positions + offset


# Past these a field is a typo or a hostile file, not a model: the largest published configs are far below
# (126 layers, 262k vocabularies, widths under 2**17), and an absurd size would overflow the cost model.
_MAX_LAYERS = 10_000
_MAX_SIZE = 2**24
_MAX_POSITIONS = 2**40  # positions and windows: some configs write very large "unlimited" values


def _ceiling(key: str) -> int:
    if key in ("max_position_embeddings", "sliding_window"):
        return _MAX_POSITIONS
    return _MAX_LAYERS if "layers" in key else _MAX_SIZE


def _int(config: dict, key: str, default: Any = _MISSING, minimum: int = 1) -> int:
    """`config[key]` as an int in `minimum`..a stated ceiling; None or absent fall back to `default`, else raise."""
    value = config.get(key)
    if value is None:
        if default is _MISSING or default is None:
            raise SpecError(f"the config has no {key}; the FLOP and byte model needs it, so pass the model's full "
                            "config.json (a decoder-only causal LM).")
        return int(default)
    # a float first checked for finiteness; an int of any size is finite (math.isfinite overflows on 10**400)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value)) or int(value) != value or value < minimum):
        raise SpecError(f"the config's {key} is {value!r}, not an integer of at least {minimum}; fix the config.")
    if value > _ceiling(key):
        raise SpecError(f"the config's {key} is {value!r}, above the {_ceiling(key):,} any model has; fix the config.")
    return int(value)


def _head_dim(config: dict, model_type: str, hidden: int, heads: int) -> int:
    """The config's head_dim, else the model type's default, else hidden // heads, which must then divide."""
    if config.get("head_dim") is None and model_type not in HEAD_DIM_DEFAULT and hidden % heads:
        raise SpecError(f"the config's hidden_size {hidden} is not a multiple of num_attention_heads {heads} "
                        "and it gives no head_dim; fix the config or add head_dim.")
    return _int(config, "head_dim", default=HEAD_DIM_DEFAULT.get(model_type, hidden // heads))


def _moe(config: dict, layers: int) -> tuple[int, int, int, int, tuple[bool, ...]]:
    """(experts, top_k, expert width, shared-expert width, per-layer MoE flags)."""
    experts = 0
    for key in ("num_experts", "num_local_experts", "n_routed_experts"):
        if config.get(key):
            experts = _int(config, key)
            break
    if not experts:
        return 0, 0, 0, 0, ()
    top_k = _int(config, "num_experts_per_tok")
    if top_k > experts:
        raise SpecError(f"the config's num_experts_per_tok {top_k} exceeds its {experts} experts; fix the config.")
    width = _int(config, "moe_intermediate_size", default=0, minimum=0)
    shared = _int(config, "shared_expert_intermediate_size", default=0, minimum=0)
    if not shared and config.get("n_shared_experts"):
        shared = _int(config, "n_shared_experts", minimum=0) * width
    # Dense layers inside an MoE stack, as Qwen-MoE and DeepSeek place them.
    dense_only = set(config.get("mlp_only_layers") or ())
    step = _int(config, "decoder_sparse_step", default=1)
    first_moe = _int(config, "first_k_dense_replace", default=0, minimum=0)
    flags = tuple(i not in dense_only and (i + 1) % step == 0 and i >= first_moe for i in range(layers))
    return experts, top_k, width, shared, flags


def _sliding(config: dict, model_type: str, layers: int) -> tuple[int | None, tuple[str, ...]]:
    """The window and each layer's attention type, as transformers resolves them."""
    window = config.get("sliding_window", WINDOW_DEFAULT.get(model_type))
    if config.get("use_sliding_window", model_type not in WINDOW_NEEDS_FLAG) is False:
        window = None
    if window is not None:
        # Qwen2-MoE writes 0 for "no window".
        window = _int({"sliding_window": window}, "sliding_window", minimum=0) or None
    given = config.get("layer_types")
    if given is not None:
        types = tuple(given)
        if len(types) != layers:
            raise SpecError(f"the config's layer_types lists {len(types)} layers but num_hidden_layers is {layers}; "
                            "fix the config.")
        unknown = sorted(set(types) - {FULL, SLIDING})
        if unknown:
            raise SpecError(f"the config's layer_types has {unknown[0]!r}; only {FULL!r} and {SLIDING!r} are modelled.")
        if SLIDING in types and window is None:
            raise SpecError("the config's layer_types has sliding_attention layers but no sliding_window; fix the config.")
        return window, types
    if window is None:
        return None, (FULL,) * layers
    rule = SLIDING_LAYER_RULES.get(model_type)
    if rule is None:  # Mistral, Mixtral, Phi-3, Qwen3-MoE: every layer
        return window, (SLIDING,) * layers
    return window, tuple(SLIDING if rule(i, config) else FULL for i in range(layers))


def _max_window_layers(config: dict) -> int:
    return _int(config, "max_window_layers", default=28, minimum=0)


# model_type -> which layers slide when the config gives no layer_types (transformers' defaults).
SLIDING_LAYER_RULES: dict[str, Callable[[int, dict], bool]] = {
    "qwen2": lambda i, c: i >= _max_window_layers(c),
    "qwen3": lambda i, c: i >= _max_window_layers(c),
    "qwen2_moe": lambda i, c: bool((i + 1) % 2) and i < _max_window_layers(c),
    "gemma2": lambda i, c: bool((i + 1) % 2),
    "gemma3": lambda i, c: bool((i + 1) % _int(c, "sliding_window_pattern", default=6)),
    "gemma3_text": lambda i, c: bool((i + 1) % _int(c, "sliding_window_pattern", default=6)),
}
