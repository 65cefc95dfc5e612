"""The one grammar for prompt lengths: `2048`, `16k` (16 x 1024, as model cards write it), and sweeps.

Torch-free, so `predict` and the benchmarks read lengths the same way the profiler does.
"""
from __future__ import annotations

import re

from analyzers.errors import InputError


def token_count(text: str) -> int:
    """`2048`, or `16k` meaning 16 x 1024."""
    m = _ITEM.match(text)
    if not m:
        raise InputError(f"{text!r} is not a whole number of tokens; {_FORMAT}.")
    return _bounded(int(m.group(1)) * (1024 if m.group(2) else 1), text)


# No model is trained on prompts this long; a length past it is a typo, and its memory estimate overflows sense.
MAX_TOKENS = 2**26


def _bounded(n: int, text: str) -> int:
    if n > MAX_TOKENS:
        raise InputError(f"{text.strip()!r} is {n:,} tokens, above the {MAX_TOKENS:,} a length may be; "
                         "pass a shorter `seq_len`.")
    return n


_ITEM = re.compile(r"^\s*(-?\d+)\s*([kK]?)\s*$")
_FORMAT = "write lengths as integers, optionally with k (= 1024), e.g. 1024,2048,4096 or 1k..32k"


def _length(item: str, text: str) -> int:
    m = _ITEM.match(item)
    if not m:
        raise InputError(f"{item.strip()!r} in {text!r} is not a length; {_FORMAT}.")
    return _bounded(int(m.group(1)) * (1024 if m.group(2) else 1), item)


def parse_lengths(text: str) -> list[int]:
    """"1024,2048,4096", "1k..32k" (doubling: 1024, 2048, ..., 32768), "512..4096"; items may be mixed by commas."""
    if not text or not text.strip():
        raise InputError(f"no lengths given; {_FORMAT}.")
    lengths: list[int] = []
    for item in text.split(","):
        if ".." in item:
            lengths.extend(_doubling(item, text))
        else:
            lengths.append(_length(item, text))
    for n in lengths:
        if n <= 0:
            raise InputError(f"length {n} in {text!r} is not positive; every length must be 1 token or more.")
    for prev, n in zip(lengths, lengths[1:], strict=False):  # neighbours: one shorter on purpose
        if n <= prev:
            what = "repeated" if n == prev else f"after {prev}, out of order"
            raise InputError(f"length {n} in {text!r} is {what}; list lengths in increasing order, each once.")
    if len(lengths) < 2:
        raise InputError(f"{text.strip()!r} is a single length and a sweep needs at least two lengths; "
                         "add more, e.g. 1k..8k.")
    return lengths


def _doubling(item: str, text: str) -> list[int]:
    """`start..end`: start, 2·start, ... up to end, which the doubling must land on."""
    ends = item.split("..")
    if len(ends) != 2:
        raise InputError(f"{item.strip()!r} is not a range; write a range as start..end, e.g. 1k..32k.")
    start, end = (_length(e, text) for e in ends)
    if start <= 0:
        raise InputError(f"the range {item.strip()} starts at {start}, not a positive length; start it at 1 or more.")
    if end <= start:
        raise InputError(f"the range {item.strip()} does not increase; write it as smaller..larger.")
    span = [start]
    while span[-1] < end:
        span.append(span[-1] * 2)
    if span[-1] != end:
        raise InputError(f"the range {item.strip()} doubles from {start} past {end} without reaching it; "
                         f"end it on a doubling such as {span[-2]} or {span[-1]}, or list the lengths.")
    return span
