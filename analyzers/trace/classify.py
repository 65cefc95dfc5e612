"""Kernel classes from names, for traces recorded without our ranges.

The rules are data (`analyzers/data/kernel_classes.json`, where each class
says why it is there and why it sits where it does in the order), so they can
be read and extended without touching code.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from analyzers.errors import InputError
from analyzers.trace.kinds import coded

__all__ = ["KERNEL_CLASSES_PATH", "OTHER_CLASS", "class_of", "kernel_classes"]

KERNEL_CLASSES_PATH = Path(__file__).parents[1] / "data" / "kernel_classes.json"
OTHER_CLASS = "other"  # no rule matches

Rule = tuple[str, frozenset[str], "re.Pattern | None"]


@lru_cache(maxsize=1)
def _rules() -> tuple[Rule, ...]:
    try:
        doc = json.loads(KERNEL_CLASSES_PATH.read_text())
        rows = []
        for entry in doc["classes"]:
            patterns = entry.get("patterns", [])
            regex = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None
            rows.append((entry["class"], frozenset(c.lower() for c in entry.get("categories", [])), regex))
    except (OSError, ValueError, KeyError, TypeError, re.error) as exc:
        raise InputError(f"{KERNEL_CLASSES_PATH} is unreadable ({exc}); restore it from the package.") from exc
    return tuple(rows)


def class_of(name: str, cat: str) -> str:
    """The first rule that takes the event's category or matches its name wins; the order is the json's."""
    cat = cat.lower()
    return next((cls for cls, categories, regex in _rules()
                 if cat in categories or (regex is not None and regex.search(name))), OTHER_CLASS)


def kernel_classes(names: pd.Series, cats: pd.Series) -> np.ndarray:
    """Class of each event; the rules run once per distinct (name, category), not once per event."""
    name_codes, name_labels = coded(names)
    cat_codes, cat_labels = coded(cats)
    if len(name_codes) == 0:
        return np.zeros(0, dtype=object)
    width = len(cat_labels)
    keys, inverse = np.unique(name_codes * width + cat_codes, return_inverse=True)
    classes = [class_of(name_labels[key // width], cat_labels[key % width]) for key in keys.tolist()]
    return np.array(classes, dtype=object)[inverse.ravel()]
