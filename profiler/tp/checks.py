"""What a tensor-parallel run needs, checked in the parent before any rank starts (one sentence each)."""
from __future__ import annotations

from analyzers.cost.model_spec import ModelSpec
from analyzers.errors import InputError, ParameterError


def tp_plan_of(model_type: str) -> dict | None:
    """The architecture's tensor-parallel plan as transformers ships it (`base_model_tp_plan`), or None."""
    from transformers import AutoConfig

    try:
        config_class = type(AutoConfig.for_model(model_type))
    except ValueError:
        return None
    return getattr(config_class, "base_model_tp_plan", None) or None


def check_tp(config: dict, tp: int, device: str, devices: int | None) -> None:
    """Refuse a --tp the model or the machine cannot take: no plan, heads not divisible, too few GPUs."""
    spec = ModelSpec.from_config(config)
    if tp_plan_of(spec.model_type) is None:
        raise InputError(f"transformers has no tensor-parallel plan for {spec.model_type or 'this'} models, so --tp "
                         "cannot shard it; Llama, Qwen2/3, Mistral, Mixtral and Gemma-style models have one.")
    for name, count in (("attention heads", spec.heads), ("key/value heads", spec.kv_heads)):
        if count % tp:
            raise ParameterError("tp", tp, f"does not divide the model's {count} {name}",
                                 "pick a --tp that divides both the attention and the key/value heads")
    if device.startswith("cuda") and devices is not None and tp > devices:
        raise ParameterError("tp", tp, f"is more than the {devices} GPUs this machine has",
                             "pass at most that many, or start ranks on several hosts with torchrun")
