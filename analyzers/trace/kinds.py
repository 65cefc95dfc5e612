"""Which rows of a trace frame are device work, launches and ranges, and on which thread.

Every test here runs once per distinct category value, not once per event:
a trace repeats a few hundred names hundreds of thousands of times, and the
frame's categoricals let a per-value answer be spread over the events with one
numpy take.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["ANNOTATION_CATS", "DEVICE_CATS", "DRIVER_CATS", "FLOW_CAT", "LAUNCH_CATS", "RANGE_CATS", "RUNTIME_CATS",
           "cat_in", "category_mask", "coded", "complete", "name_startswith", "row_labels", "thread_keys"]

# Kineto category names, compared lower-case: PyTorch < 1.10 wrote "Kernel", "Memcpy", "Runtime".
# `cuda_sync` is not device work: it is the device *waiting*, so no component is charged with it.
DEVICE_CATS = frozenset({"kernel", "gpu_memcpy", "gpu_memset", "memcpy", "memset"})
RUNTIME_CATS = frozenset({"cuda_runtime", "runtime"})
DRIVER_CATS = frozenset({"cuda_driver", "driver"})
LAUNCH_CATS = RUNTIME_CATS | DRIVER_CATS
RANGE_CATS = frozenset({"user_annotation", "cpu_op"})  # record_function ranges: ours are named ttft/...
ANNOTATION_CATS = frozenset({"user_annotation"})
FLOW_CAT = "ac2g"  # "async CPU to GPU" flows; other flows (fwdbwd) link ops, not launches


def complete(frame: pd.DataFrame) -> np.ndarray:
    """Complete ("X") events: only they have the duration that time is counted from."""
    return category_mask(frame["ph"], lambda value: value == "X")


def cat_in(frame: pd.DataFrame, wanted: frozenset[str]) -> np.ndarray:
    return category_mask(frame["cat"], lambda value: value.lower() in wanted)


def name_startswith(frame: pd.DataFrame, prefix: str) -> np.ndarray:
    return category_mask(frame["name"], lambda value: value.startswith(prefix))


def category_mask(series: pd.Series, keep: Callable[[str], bool]) -> np.ndarray:
    """Evaluate `keep` once per distinct value rather than once per event."""
    cat = series.array if isinstance(series.dtype, pd.CategoricalDtype) else pd.Categorical(series)
    per_category = np.array([keep(str(value)) for value in cat.categories] + [False], dtype=bool)
    return per_category[np.asarray(cat.codes)]  # code -1 (missing) picks the trailing False


def thread_keys(frame: pd.DataFrame) -> np.ndarray:
    """One int64 per (pid, tid): ranges and launches must sit on the same thread."""
    pid, tid = coded(frame["pid"])[0], coded(frame["tid"])[0]
    return pid * (int(tid.max(initial=0)) + 2) + tid


def coded(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, labels) with labels as str objects; a missing value gets code len(labels)-1 and label ""."""
    cat = series.array if isinstance(series.dtype, pd.CategoricalDtype) else pd.Categorical(series.astype(str))
    labels = np.array([str(c) for c in cat.categories] + [""], dtype=object)
    codes = np.asarray(cat.codes, dtype=np.int64)
    return np.where(codes < 0, len(labels) - 1, codes), labels


def row_labels(index: pd.Index, positions: np.ndarray) -> pd.arrays.IntegerArray | np.ndarray:
    """Row positions (-1 = none) -> row labels of `index`: nullable ints, or objects for other indexes."""
    missing = positions < 0
    if isinstance(index, pd.RangeIndex):
        values = index.start + positions * index.step
    elif pd.api.types.is_integer_dtype(index.dtype):
        values = np.asarray(index, dtype=np.int64)[np.where(missing, 0, positions)]
    else:
        return np.where(missing, None, np.asarray(index, dtype=object)[np.where(missing, 0, positions)])
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing)
