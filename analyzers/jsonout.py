"""Strict JSON out: NaN and infinities become null, numpy scalars plain numbers.

Python's json writes NaN and Infinity, which JSON.parse, jq and most other
readers refuse; every `--json` output and every JSON file we write goes
through here.
"""
from __future__ import annotations

import json
import math


def clean(value):
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            value = value.item()  # numpy / pandas scalars
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value, indent: int | None = 1) -> str:
    return json.dumps(clean(value), indent=indent, allow_nan=False, default=str)
