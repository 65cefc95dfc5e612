"""Build a model from a ModelSource: once, on the target device, fast.

Random weights are drawn straight into the final tensors (the model is
constructed with initialisation switched off, then filled in place), so an
8B config at --layers 2 costs one allocation of its weights and seconds of
CPU, not a default init that runs kaiming on every matrix.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import sys
from pathlib import Path

from analyzers.cost.flops import kv_cache_bytes, total_params
from analyzers.cost.model_spec import ModelSpec
from analyzers.errors import InputError, ParameterError
from analyzers.vocabulary import dtype_bytes
from profiler.catalog import ModelSource
from profiler.errors import first_line


def layer_count(config: dict) -> int:
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if key in config:
            return int(config[key])
    raise InputError("the model's config.json has no num_hidden_layers; it is not a decoder-only LM config.")


def truncated_config(config: dict, layers: int | None) -> tuple[dict, int, int]:
    total = layer_count(config)
    if layers is None:
        return dict(config), total, total
    if not 1 <= layers <= total:
        raise ParameterError("layers", layers, f"is outside 1..{total} for this model", "pick a value in that range")
    out = dict(config)
    out["num_hidden_layers"] = layers
    for key in ("layer_types", "sliding_window_pattern_layers"):
        if isinstance(out.get(key), list):
            out[key] = out[key][:layers]
    if "max_window_layers" in out:
        out["max_window_layers"] = min(int(out["max_window_layers"]), layers)
    return out, layers, total


def sdpa_math_fallback(config: dict, dtype: str, attn: str, device: str) -> bool:
    """Whether SDPA runs its math kernel here: float32 with grouped-query attention on a GPU.

    On CUDA, flash and cuDNN attention take 16-bit inputs only and the memory-efficient kernel
    does not take grouped KV heads (torch's sdp_utils), while transformers passes enable_gqa
    whenever there is no mask and head_dim <= 256; what is left is the math kernel, which
    materialises the [b, H, n, n] scores. A CPU has a float32 flash kernel that takes GQA.
    """
    if attn != "sdpa" or dtype != "float32" or not device.startswith("cuda"):
        return False
    spec = ModelSpec.from_config(config)
    return spec.kv_heads < spec.heads and spec.head_dim <= 256


def math_fallback_notice(config: dict, dtype: str, attn: str, device: str) -> str | None:
    if not sdpa_math_fallback(config, dtype, attn, device):
        return None
    spec = ModelSpec.from_config(config)
    heads, kv = spec.heads, spec.kv_heads
    return (f"note: float32 with grouped-query attention ({heads} query heads, {kv} KV heads) has no fused SDPA "
            "kernel on a GPU (flash and cuDNN need 16-bit, memory-efficient has no GQA), so attention runs "
            "the math kernel: n x n scores in memory and time that grows with n squared. bfloat16 keeps "
            "the fused kernels.")


def estimate_bytes(config: dict, seq_len: int, batch: int, dtype: str, attn: str, device: str = "cuda") -> int:
    """Rough peak memory of a prefill: weights, KV cache and the largest live activations."""
    e = dtype_bytes(dtype)
    spec = ModelSpec.from_config(config)  # any family's key names, MoE included
    d, heads, h = spec.hidden, spec.heads, spec.head_dim
    # The widest MLP activation a token makes: the dense MLP, or its top-k experts side by side.
    inter = max(spec.intermediate, spec.experts_per_token * spec.expert_intermediate)
    weights = total_params(spec) * e
    tokens = batch * seq_len
    kv_cache = kv_cache_bytes(spec, seq_len, batch, e)
    activations = tokens * (4 * d + 3 * inter + 3 * heads * h) * e
    if attn == "eager":
        # Scores and their float32 softmax are materialised, [b, H, n, n].
        activations += batch * heads * seq_len * seq_len * (e + 4)
    elif sdpa_math_fallback(config, dtype, attn, device):
        # SDPA's math kernel: K and V repeated to every query head, the [b, H, n, n] scores and their
        # softmax alive together, and the [n, n] causal mask as a float bias.
        activations += 2 * tokens * heads * h * e + 2 * batch * heads * seq_len * seq_len * e + seq_len * seq_len * e
    return int(weights + kv_cache + activations)


def check_fits(needed: int, available: int | None, device: str, math_fallback: bool = False) -> None:
    """Refuse in a sentence a run that cannot fit; with SDPA's math kernel in play, say that it is the cause."""
    if available is not None and needed > available:
        fix = "profile fewer layers (`layers`) or a shorter `seq_len`"
        if math_fallback:
            fix = ("attention runs SDPA's math kernel (float32 with grouped-query attention), whose n x n scores "
                   "dominate: use `dtype` bfloat16, or " + fix)
        raise InputError(
            f"this run needs roughly {needed / 2**30:.1f} GiB on {device} but {available / 2**30:.1f} GiB is free; "
            f"{fix}."
        )


def _init_random_(model, std: float) -> None:
    """Fill matrices with uniform noise of the config's std; leave norms and buffers as constructed.

    One block of noise is drawn and tiled: drawing billions of fresh random
    numbers takes tens of seconds on a CPU, copying is bandwidth-bound, and
    prefill timing does not depend on the weights' values (only on their not
    being denormal or NaN, which uniform noise guarantees).
    """
    import torch
    from torch import nn

    bound = std * math.sqrt(3.0)
    generator = torch.Generator(device="cpu").manual_seed(0)
    noise = torch.empty(_NOISE_BLOCK).uniform_(-bound, bound, generator=generator)
    blocks: dict[tuple, object] = {}
    with torch.no_grad():
        for module in model.modules():
            for pname, param in module.named_parameters(recurse=False):
                if not (isinstance(module, (nn.Linear, nn.Embedding)) or param.dim() >= 2):
                    continue
                if pname == "bias":
                    param.zero_()
                    continue
                key = (param.dtype, param.device)
                if key not in blocks:
                    blocks[key] = noise.to(dtype=param.dtype, device=param.device)
                block, flat = blocks[key], param.view(-1)
                for start in range(0, flat.numel(), _NOISE_BLOCK):
                    chunk = flat[start:start + _NOISE_BLOCK]
                    chunk.copy_(block[: chunk.numel()])


_NOISE_BLOCK = 1 << 22


def missing_weights(missing, where: str, allowed: bool) -> str | None:
    """Refuse weights that cover only part of the model, naming the first missing tensors; with `allowed`, a notice."""
    missing = sorted(missing)
    if not missing:
        return None
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    if not allowed:
        raise InputError(f"the weights in {where} lack {len(missing)} of the model's tensors ({shown}); "
                         "pass the complete checkpoint, or allow_missing_weights (--allow-missing-weights) "
                         "to profile with those tensors random.")
    return (f"note: the weights in {where} lack {len(missing)} tensors ({shown}); those are random "
            "(--allow-missing-weights).")


def _load_pickles(model, files: tuple[str, ...], allow_missing: bool) -> str | None:
    """Pickle checkpoints through torch.load(weights_only=True): tensors only, never arbitrary objects."""
    import torch

    state: dict = {}
    for file in files:
        try:
            loaded = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt, or holding objects weights_only refuses
            raise InputError(f"{file} could not be loaded with weights_only=True ({first_line(exc)}); "
                             "convert it to safetensors or remove it.") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{file} holds a {type(loaded).__name__}, not a state dict; save model.state_dict().")
        state.update(loaded)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that do not fit the config
        raise InputError(f"the weights in {files[0]} do not fit the config ({first_line(exc)}); "
                         "fix the checkpoint or remove it to profile with random weights.") from None
    tied = {k for k in result.missing_keys if k.endswith("lm_head.weight")} if model.config.tie_word_embeddings else set()
    return missing_weights(set(result.missing_keys) - tied, str(Path(files[0]).parent), allow_missing)


def _pickle_notice(source: ModelSource) -> str:
    names = ", ".join(Path(f).name for f in source.pickle_files)
    return (f"note: {names} not loaded: a pickle checkpoint can run code when unpickled, so it is loaded only with "
            "allow_pickle (--allow-pickle, then with torch.load(weights_only=True)); profiling with random weights.")


def _from_safetensors(source: ModelSource, config, torch_dtype, device: str, attn: str, allow_missing: bool):
    """from_pretrained, with the tensors the files lack counted, not silently drawn at random."""
    from transformers import AutoModelForCausalLM

    # Straight onto the device when accelerate is there; else through host memory
    # (accelerate is optional: one more dependency for one code path).
    direct = device != "cpu" and importlib.util.find_spec("accelerate") is not None
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            source.weights_dir, config=config, dtype=torch_dtype, attn_implementation=attn,
            local_files_only=True, output_loading_info=True, **({"device_map": device} if direct else {}),
        )
    except Exception as exc:  # the user's files: corrupt headers, shapes that do not fit the config
        if "memory" in str(exc).lower():
            raise  # the caller turns running out of memory into its own sentence
        first = first_line(exc)
        raise InputError(f"the weights in {source.weights_dir} could not be loaded ({first}); "
                         "fix or remove the *.safetensors files to profile with random weights.") from None
    notice = missing_weights(info.get("missing_keys") or (), source.weights_dir, allow_missing)
    if device != "cpu" and not direct:
        model.to(device)
    return model, notice


def _random(config, config_dict: dict, torch_dtype, device: str, attn: str):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    with torch.device(device), no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation=attn)
    model.tie_weights()  # no_init_weights also skips tying: Gemma's lm_head must be its embedding
    _init_random_(model, float(config_dict.get("initializer_range", 0.02)))
    return model


def build(source: ModelSource, layers: int | None, dtype: str, device: str, attn: str, *,
          allow_missing_weights: bool = False, allow_pickle: bool = False, notices: list | None = None):
    """The model, with its weights when there are usable ones; what a run should know is printed to stderr
    and added to `notices` (the run's, recorded in run.json), so random tensors are never silent."""
    import torch
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    config_dict, _built, _total = truncated_config(source.config, layers)
    model_type = config_dict.get("model_type")
    if not model_type:
        raise InputError("the model's config.json has no model_type; it cannot be built from its config.")
    hf_logging.set_verbosity_error()
    fields = {k: v for k, v in config_dict.items() if k not in ("model_type", "transformers_version", "_name_or_path")}
    try:
        config = AutoConfig.for_model(model_type, **fields)
    except ValueError as exc:
        raise InputError(f"transformers cannot build model_type {model_type!r} ({exc}); upgrade transformers.") from None
    torch_dtype = getattr(torch, dtype)
    said: list[str | None] = []
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            if source.weights_dir is not None:
                model, notice = _from_safetensors(source, config, torch_dtype, device, attn, allow_missing_weights)
                said.append(notice)
            else:
                model = _random(config, config_dict, torch_dtype, device, attn)
                if source.pickle_files and allow_pickle:
                    said.append(_load_pickles(model, source.pickle_files, allow_missing_weights))
                elif source.pickle_files:
                    said.append(_pickle_notice(source))
    except (ValueError, ImportError) as exc:
        first = first_line(exc)
        if "attn" in first.lower() or "attention" in first.lower():
            raise ParameterError("attn", attn, f"is not available for this model here ({first})", "try `attn` sdpa or eager") from None
        raise
    _tell([n for n in said if n], notices)
    model.eval()
    return model


def _tell(lines: list[str], notices: list | None) -> None:
    """Printed now (the session announced its notices before the build) and kept with the run's."""
    for line in lines:
        print(line, file=sys.stderr)
    if notices is not None:
        notices.extend(lines)
