"""Typed pandas columns from the plain Python sequences a trace parse leaves.

Both parse paths in `analyzers.trace.load` end here, so the two give the same
dtypes and the same category order: names as categoricals in order of first
use, ids as nullable Int64 (most events lack them, and 0 is a valid id).
"""
from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
import pandas as pd

__all__ = ["categorical", "floats", "id_columns", "kind_categorical"]

_FROMITER_OBJECTS = np.lib.NumpyVersion(np.__version__) >= "1.23.0"  # np.fromiter(dtype=object) is new in 1.23


def id_columns(correlation, external_id, stream, device, nbytes, flow_ids) -> dict:
    """The integer id columns, missing values kept as missing (nullable Int64)."""
    return {"correlation": int_column(correlation), "external_id": int_column(external_id),
            "stream": int_column(stream), "device": int_column(device), "bytes": int_column(nbytes),
            "flow_id": int_column(flow_ids)}


def kind_categorical(kinds: Collection[tuple], kind_codes: np.ndarray, field: int, as_str: bool) -> pd.Categorical:
    """Column `field` of the kinds (name, cat, ph, pid, tid), per event, as `categorical` builds it.

    Numbering each field's values over the kinds in order of first use gives exactly the order of
    first use over the events (an event that first shows a value also first shows its kind), and
    groups values as pd.factorize does (dict equality: 7 with 7.0, each NaN apart), except that
    factorize leaves None and NaN out (missing, shown as "" after all others), so that is done here.
    """
    table: dict = {}
    per_kind = np.empty(len(kinds), dtype=np.int32)
    for i, kind in enumerate(kinds):
        value = kind[field]
        code = table.get(value)
        if code is None:
            code = table[value] = len(table)
        per_kind[i] = code
    codes = per_kind[kind_codes]
    labels = list(table)
    missing = [label is None or (isinstance(label, float) and math.isnan(label)) for label in labels]
    if any(missing):
        kept = [label for label, gone in zip(labels, missing, strict=True) if not gone]
        remap = np.full(len(labels), len(kept), dtype=np.int32)
        remap[~np.array(missing)] = np.arange(len(kept), dtype=np.int32)
        codes = remap[codes]
        labels = [*kept, ""]
    return _from_codes(codes, labels, as_str)


def categorical(values: tuple | list, as_str: bool = False) -> pd.Categorical:
    """Intern through pd.factorize on an object array (C hash table; categories in order of
    first use), then build the Categorical from codes, which skips pandas' own re-hashing.

    `as_str` turns the few distinct values into strings, for ids that mix 7 and "Spans".
    """
    objects = _object_array(values)
    try:
        # pandas' C hash table: ~3x faster than a dict.setdefault loop on 200k values
        codes, uniques = pd.factorize(objects, sort=False)
    except TypeError:  # an unhashable name (a list or object): junk, but shown rather than refused
        return categorical([str(v) for v in values], as_str)
    codes = codes.astype(np.int32)
    labels = list(uniques)
    if (codes < 0).any():  # factorize leaves None/NaN out; an explicit JSON null is shown as ""
        codes[codes < 0] = len(labels)
        labels.append("")
    return _from_codes(codes, labels, as_str)


def _from_codes(codes: np.ndarray, labels: list, as_str: bool) -> pd.Categorical:
    if as_str or not all(isinstance(label, str) for label in labels):
        labels = ["" if label is None else str(label) for label in labels]
    if len(set(labels)) != len(labels):  # 7 and "7", or null and "": the same in any viewer, so merge them
        merged = {label: i for i, label in enumerate(dict.fromkeys(labels))}
        codes = np.array([merged[label] for label in labels], dtype=np.int32)[codes]
        labels = list(merged)
    return pd.Categorical.from_codes(codes, categories=labels)


def _object_array(values: tuple | list) -> np.ndarray:
    if _FROMITER_OBJECTS:
        return np.fromiter(values, dtype=object, count=len(values))  # ~1.6x faster than the slice below
    objects = np.empty(len(values), dtype=object)
    objects[:] = values
    return objects


def floats(values: tuple | list | np.ndarray) -> np.ndarray | None:
    """float64 array, or None for junk: timestamps treat that as an error, ids as missing."""
    try:
        if isinstance(values, np.ndarray):  # an object column (the msgspec path): the same cast, ~1.4x faster
            return values.astype(np.float64)
        return np.fromiter(values, dtype=np.float64, count=len(values))
    except (TypeError, ValueError, OverflowError):
        pass
    try:
        parsed = np.array(values, dtype=np.float64)  # slower, but turns an explicit JSON null into NaN
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float range
        return None
    # equal-length lists in place of numbers ('ts': []) give a 2-D array: junk, not a column
    return parsed if parsed.ndim == 1 else None


def int_column(values: tuple | list | np.ndarray) -> pd.arrays.IntegerArray:
    # Via float64, where NaN marks a missing value; ids and byte counts stay below 2**53.
    as_float = floats(values)
    if as_float is not None:
        missing = np.isnan(as_float)
        whole = np.where(missing, 0.0, as_float)
        if not (np.abs(whole) >= 2.0**53).any() and (whole == np.floor(whole)).all():
            return pd.arrays.IntegerArray(whole.astype(np.int64), missing)
    # Rare: hex strings ("0x1f"), huge ids or junk; parse what parses, the rest becomes missing.
    parsed = [_to_int(v) for v in values]
    missing = np.fromiter((v is None for v in parsed), dtype=bool, count=len(parsed))
    return pd.arrays.IntegerArray(np.array([0 if v is None else v for v in parsed], dtype=np.int64), missing)


def _to_int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**63 else None  # NaN is not an integer
    if isinstance(value, str):
        try:
            return _to_int(int(value, 0))
        except ValueError:
            return None
    return None
