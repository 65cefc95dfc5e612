"""Where a `--model` comes from: a built-in name, a local folder, or the HF cache.

No network is ever used: a hub id that is not in the local cache falls back to
the built-in table of published configs, with random weights and a notice.
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from analyzers.errors import InputError

DATA = Path(__file__).with_name("data") / "models.json"

SourceKind = Literal["builtin", "local", "hf-cache"]


@dataclass(frozen=True)
class ModelSource:
    """A resolved `--model`: the config to build and where weights are, if anywhere."""

    name: str
    kind: SourceKind
    config: dict
    weights_dir: str | None
    origin: str
    pickle_files: tuple[str, ...] = ()
    """Pickle checkpoints found where no safetensors are: loaded only with allow_pickle, never by default."""

    @property
    def random_weights(self) -> bool:
        return self.weights_dir is None


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(DATA.read_text())


def builtin_names() -> list[str]:
    return list(_table()["models"])


def default_model() -> str:
    return _table()["default"]


def builtin_entry(name: str) -> dict:
    return _table()["models"][name]


def _has_safetensors(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").exists()


def _read_config(config_file: Path) -> dict:
    """A config.json as a dict, or one sentence naming the file: unreadable, not JSON, or not an object."""
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{config_file} is not readable JSON ({exc}); fix or replace the file.") from None
    except RecursionError:
        raise InputError(f"{config_file} is JSON nested too deep to be a config; fix or replace the file.") from None
    if not isinstance(config, dict):
        raise InputError(f"{config_file} holds a JSON {type(config).__name__}, not a config object; "
                         "pass a folder saved with save_pretrained().")
    return config


# Pickle checkpoints can run code when unpickled; they are listed, and loaded only on request (weights_only).
PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth")


def _pickles(folder: Path) -> tuple[str, ...]:
    if _has_safetensors(folder):
        return ()
    return tuple(sorted({str(f) for pattern in PICKLE_PATTERNS for f in folder.glob(pattern) if f.is_file()}))


def _from_local(path: Path, name: str) -> ModelSource:
    config_file = path / "config.json"
    if not config_file.exists():
        raise InputError(
            f"the folder {path} has no config.json; pass a folder saved with save_pretrained() "
            "or a built-in name (see `ttft-profile models`)."
        )
    config = _read_config(config_file)
    weights = str(path) if _has_safetensors(path) else None
    return ModelSource(name, "local", config, weights, str(path), _pickles(path))


def _from_hf_cache(repo_id: str) -> ModelSource | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # a malformed id or cache: treat as not cached
        return None
    if not isinstance(found, str):
        return None
    snapshot = Path(found).parent
    config = _read_config(Path(found))
    weights = str(snapshot) if _has_safetensors(snapshot) else None
    return ModelSource(repo_id, "hf-cache", config, weights, str(snapshot), _pickles(snapshot))


def resolve(name: str) -> ModelSource:
    """Turn what the user typed into a ModelSource, or a UsageError naming the fix."""
    path = Path(name).expanduser()
    if path.is_dir():
        return _from_local(path, name)
    if "/" in name and not name.startswith((".", "/")):
        cached = _from_hf_cache(name)
        if cached is not None:
            return cached
    table = _table()["models"]
    if name in table:
        entry = table[name]
        return ModelSource(name, "builtin", dict(entry["config"]), None, entry["source"])
    lowered = {k.lower(): k for k in table}
    if name.lower() in lowered:
        key = lowered[name.lower()]
        entry = table[key]
        return ModelSource(key, "builtin", dict(entry["config"]), None, entry["source"])
    close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.4)
    close += [k for k in table if name.lower() in k.lower() and k not in close]
    hint = f"did you mean {', '.join(close[:3])}?" if close else "run `ttft-profile models` to list them."
    raise InputError(
        f"unknown model {name!r}: not a local folder, not in the Hugging Face cache and not built in; {hint}"
    )
