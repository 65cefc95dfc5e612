"""Kernel classes: by the op that launched a kernel, else by the kernel's own name.

Per device event (docs/kernel-classes.md):
(a) copies and fills, by Kineto category -> `memory`;
(b) the launching op's rule (`analyzers/data/op_classes.json`): the op says what the
    model asked for, whatever the library calls its kernel (aten::mm under hipBLASLt
    runs `Cijk_...`, under cuBLAS `nvjet_...`); a weak rule (aten plumbing) gives way to
    an enclosing op, then to a specific kernel name;
(c) the kernel's own name (`analyzers/data/kernel_classes.json`) when there is no
    launching op or the op has no rule.
Names are matched on their own name only (never inside template arguments, where
`cutlass` or `all_reduce` says nothing about the kernel) by whole tokens, never by
substrings (`_bN_` in a GEMM's name is not batch norm), and without regular expressions
from data, so a hostile 1 MB name costs linear time.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from analyzers.errors import InputError
from analyzers.trace.kinds import coded
from analyzers.trace.nesting import Nesting
from analyzers.vocabulary import KERNEL_CLASSES

__all__ = ["CLASS_BASES", "KERNEL_CLASSES", "KERNEL_CLASSES_PATH", "OP_CLASSES_PATH", "OTHER_CLASS", "STRUCTURE_PATTERN",
           "TOKEN_PATTERN", "class_of", "is_known_op", "kernel_classes", "load_rules", "name_class", "op_class", "op_classes",
           "own_name", "tokens"]

DATA = Path(__file__).parents[1] / "data"
KERNEL_CLASSES_PATH, OP_CLASSES_PATH = DATA / "kernel_classes.json", DATA / "op_classes.json"

# What decided a class: the launching op, the kernel's name, its Kineto category, or nothing (-> other).
CLASS_BASES: tuple[str, ...] = ("op", "name", "category", "none")
OTHER_CLASS, MEMORY_CLASS = "other", "memory"
MEMORY_CATS = frozenset({"gpu_memcpy", "gpu_memset", "memcpy", "memset"})
# A name that only says this is not specific enough to overrule a weak op rule.
UNSPECIFIC = frozenset({"elementwise", OTHER_CLASS})

# Tokens: an upper-case run with its lower-case tail, a lower-case run, or digits. No groups, so no
# nested quantifiers: linear on any input (checked structurally by the tests).
TOKEN_PATTERN = "[A-Z]+[a-z]*|[a-z]+|[0-9]+"
_TOKEN = re.compile(TOKEN_PATTERN)
STRUCTURE_PATTERN = "[<>(){}\\[\\],]"  # template-argument punctuation, one character at a time
_STRUCTURE = re.compile(STRUCTURE_PATTERN)
ANONYMOUS = "(anonymous namespace)::"
SCAN_CHARS = 4096  # a wrapper's subject sits in its first template arguments; bounded, so hostile names stay cheap
MAX_DEPTH = 3  # wrappers inside wrappers: elementwise_kernel<gpu_kernel_impl<BinaryFunctor<..., MulFunctor>>>
MAX_PARTS = 64  # components of a mangled nested name
WORD = re.compile("[a-z0-9]+( [a-z0-9]+)*")  # validates data words (full match), never run on kernel names
IDENT = re.compile("[A-Za-z0-9_:]+")


@dataclass(frozen=True)
class Rule:
    cls: str
    prefixes: tuple[str, ...] = ()
    words: tuple[str, ...] = ()  # " a b " with surrounding spaces: a substring test on " tok tok " is a token-run test
    ops: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    weak: bool = False


@dataclass(frozen=True)
class Wrapper:
    names: tuple[str, ...]
    otherwise: str | None


@dataclass(frozen=True)
class Tables:
    name_rules: tuple[Rule, ...]
    wrappers: tuple[Wrapper, ...]
    op_rules: tuple[Rule, ...]
    not_inherited: frozenset[str]


def _rule(entry: dict, path: Path) -> Rule:
    cls = entry["class"]
    words, prefixes = entry.get("words", []), entry.get("prefixes", [])
    bad = ([cls] if cls not in KERNEL_CLASSES else []) + [w for w in words if not WORD.fullmatch(w)] + [
        p for p in [*prefixes, *entry.get("ops", []), *entry.get("namespaces", [])] if not IDENT.fullmatch(p)]
    if bad:
        raise InputError(f"{path} has an unknown class or a malformed word, prefix or op: {bad[0]!r}; "
                         f"classes are {', '.join(KERNEL_CLASSES)} and words are lower-case tokens.")
    return Rule(cls, tuple(prefixes), tuple(f" {w} " for w in words), frozenset(entry.get("ops", [])),
                frozenset(entry.get("namespaces", [])), bool(entry.get("weak", False)))


def load_rules(kernel_path: Path = KERNEL_CLASSES_PATH, op_path: Path = OP_CLASSES_PATH) -> Tables:
    """Read and check both rule files; InputError names the file and what is wrong with it."""
    try:
        names, ops = json.loads(kernel_path.read_text()), json.loads(op_path.read_text())
        wrappers = tuple(Wrapper(tuple(w["names"]), w["otherwise"]) for w in names["wrappers"])
        bad = [w.otherwise for w in wrappers if w.otherwise is not None and w.otherwise not in KERNEL_CLASSES]
        if bad:
            raise InputError(f"{kernel_path} has a wrapper with an unknown class {bad[0]!r}.")
        return Tables(tuple(_rule(e, kernel_path) for e in names["classes"]), wrappers,
                      tuple(_rule(e, op_path) for e in ops["rules"]), frozenset(ops["not_inherited"]))
    except InputError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{kernel_path.parent} holds unreadable class rules ({exc}); "
                         "restore them from the package.") from exc


@lru_cache(maxsize=1)
def _tables() -> Tables:
    return load_rules()


# ------------------------------------------------------------------ a kernel's own name


def tokens(text: str) -> str:
    """' tok tok ... ' in lower case: words match runs of whole tokens by a plain substring test."""
    return " " + " ".join(_TOKEN.findall(text)).lower() + " "


def own_name(name: str) -> str:
    """The kernel's own (qualified) name: `void ns::k<...>(...)` -> `ns::k`; `_ZN5aiter6kernelI...` -> `aiter::kernel`."""
    text = name.replace(ANONYMOUS, "")
    return _mangled(text)[0] if text.startswith("_Z") else _demangled(text)[0]


def _demangled(text: str) -> tuple[str, int]:
    """(own name, index of the '<' opening its template arguments or -1)."""
    cut = min((i for i in (text.find("<"), text.find("(")) if i >= 0), default=len(text))
    head = text[:cut].strip()
    head = head.rsplit(" ", 1)[-1] if " " in head else head  # drop the return type ("void ")
    return head, cut if cut < len(text) and text[cut] == "<" else -1


def _mangled(text: str) -> tuple[str, str | None]:
    """Itanium-mangled name -> (own name, the first type argument's name or None), for ROCm traces,
    which keep names mangled. Reads only length-prefixed identifiers: no demangler, linear."""
    pos = 3 if text.startswith("_ZL") else 2
    parts, pos = _mangled_parts(text, pos)
    subject = None
    if text.startswith("I", pos):
        pos += 1
        while text.startswith("L", pos):  # literal arguments (Li2E, Lb1E) say nothing
            end = text.find("E", pos)
            pos = end + 1 if end >= 0 else len(text)
        if pos < len(text) and (text[pos] == "N" or text[pos].isdigit()):
            subject = "::".join(_mangled_parts(text, pos)[0]) or None
    return "::".join(parts), subject


def _mangled_parts(text: str, pos: int) -> tuple[list[str], int]:
    nested = text.startswith("N", pos)
    pos += nested
    while pos < len(text) and text[pos] in "rVKRO":  # cv- and ref-qualifiers of a nested name
        pos += 1
    parts: list[str] = []
    for _ in range(MAX_PARTS):
        if pos >= len(text):
            break
        if text[pos].isdigit():
            end = pos
            while end < len(text) and end - pos < 6 and text[end].isdigit():
                end += 1
            size = int(text[pos:end])
            part, pos = text[end:end + size], end + size
            if not part.startswith("_GLOBAL__N"):  # the anonymous namespace
                parts.append(part)
            if not nested:
                break
        elif nested and text.startswith("St", pos):
            parts.append("std")
            pos += 2
        elif nested and text[pos] == "S":  # a substitution (S_, S4_): an earlier name, unknown here
            end = text.find("_", pos, pos + 8)
            if end < 0:
                break
            pos = end + 1
        else:
            break
    return parts, pos


def _arguments(text: str, open_at: int):
    """Top-level template arguments after the '<' at `open_at`, read within SCAN_CHARS."""
    depth, begin = 0, open_at + 1
    for mark in _STRUCTURE.finditer(text, open_at, min(len(text), open_at + SCAN_CHARS)):
        char = mark.group()
        if char in "<({[":
            depth += 1
        elif char in ">)}]":
            depth -= 1
            if depth == 0:
                yield text[begin:mark.start()]
                return
        elif depth == 1:
            yield text[begin:mark.start()]
            begin = mark.end()


def _literal(argument: str) -> bool:
    argument = argument.strip()
    return not argument or argument[0] in "0123456789-(" or argument in ("true", "false")


# ------------------------------------------------------------------ name rules


def _head_class(head: str) -> str | None:
    base, words = head.rsplit("::", 1)[-1], tokens(head)
    for rule in _tables().name_rules:
        if (not rule.prefixes or base.startswith(rule.prefixes)) and (
                not rule.words or any(word in words for word in rule.words)):
            return rule.cls
    return None


def _wrapper(head: str) -> Wrapper | None:
    return next((w for w in _tables().wrappers for n in w.names if head == n or head.endswith("::" + n)), None)


def _resolve(text: str, depth: int) -> str | None:
    if text.startswith("_Z"):
        head, subject = _mangled(text)
        subjects = [subject] if subject else []
    else:
        head, open_at = _demangled(text)
        subjects = _arguments(text, open_at) if open_at >= 0 else []
    wrapper = _wrapper(head)
    if wrapper is None:
        return _head_class(head)
    if depth < MAX_DEPTH:
        for argument in subjects:
            found = None if _literal(argument) else _resolve(argument.strip(), depth + 1)
            if found is not None:
                return found
    return wrapper.otherwise


@lru_cache(maxsize=4096)  # bounded: names can be long, and the frame holds them anyway
def name_class(name: str) -> str | None:
    """Class of a kernel from its own name alone, or None when no rule knows it.

    Only the first NAME_PREFIX characters are read: a kernel's own name and the start of its
    template arguments are what the rules look at (the longest real name seen is ~5k
    characters), and a hostile 100 MB name must cost no more than a real one."""
    return _resolve(name[:NAME_PREFIX].replace(ANONYMOUS, ""), 0)


NAME_PREFIX = 1 << 16


# ------------------------------------------------------------------ op rules


@lru_cache(maxsize=4096)  # bounded: names can be long, and the frame holds them anyway
def op_class(op: str) -> tuple[str | None, bool]:
    """(class, weak) the launching op gives its kernels; (None, False) when no rule knows the op."""
    namespace, sep, rest = op.partition(":")
    words = tokens(rest) if sep else ""
    for rule in _tables().op_rules:
        if op in rule.ops or (sep and (namespace in rule.namespaces or any(w in words for w in rule.words))):
            return rule.cls, rule.weak
    return None, False


def is_known_op(name: str) -> bool:
    """A user_annotation counts as an op when it is namespaced and a rule knows it (nccl:all_reduce)."""
    return ":" in name and op_class(name)[0] is not None


def op_classes(names: np.ndarray, nesting: Nesting) -> tuple[np.ndarray, np.ndarray]:
    """Per op range (caller's order): the class it gives its kernels (None: no rule) and whether that is weak.

    A weak op takes the class of its nearest enclosing op with a strong rule (clamp_min_
    in relu_, index_select in embedding), unless that class is not inherited (a copy in a
    matmul stays elementwise). One pass per nesting level, vectorised over the ranges.
    """
    codes, uniques = pd.factorize(np.asarray(names, dtype=object))
    found = [op_class(str(u)) for u in uniques]
    own = np.array([c for c, _ in found] + [None], dtype=object)[codes]
    weak = np.array([w for _, w in found] + [False], dtype=bool)[codes]
    parent = np.full(len(own), -1, dtype=np.int64)
    inner = nesting.parent >= 0
    parent[nesting.order[inner]] = nesting.order[nesting.parent[inner]]
    strong = np.array([c is not None for c in own], dtype=bool) & ~weak
    up = parent.copy()
    climbing = (up >= 0) & ~strong[np.maximum(up, 0)]
    while climbing.any():
        up[climbing] = parent[up[climbing]]
        climbing = (up >= 0) & ~strong[np.maximum(up, 0)]
    inherited = np.where(up >= 0, own[np.maximum(up, 0)], None)
    takes = weak & np.array([c is not None and c not in _tables().not_inherited for c in inherited], dtype=bool)
    own[takes], weak[takes] = inherited[takes], False
    return own, weak


# ------------------------------------------------------------------ per event


def class_of(name: str, cat: str, op: str | None = None, weak: bool = False) -> tuple[str, str]:
    """(class, basis) of one device event; `op`/`weak` are its launching op's class and weakness."""
    if cat.lower() in MEMORY_CATS:
        return MEMORY_CLASS, "category"
    if op is not None and not weak:
        return op, "op"
    named = name_class(name)
    if op is not None:
        specific = named is not None and named not in UNSPECIFIC and named != op
        return (named, "name") if specific else (op, "op")
    return (named, "name") if named is not None else (OTHER_CLASS, "none")


def kernel_classes(names: pd.Series, cats: pd.Series, op: np.ndarray | None = None,
                   weak: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(class, basis) of each device event; the rules run once per distinct (name, category, op class)."""
    n = len(names)
    if n == 0:
        return np.zeros(0, dtype=object), np.zeros(0, dtype=object)
    op = np.full(n, None, dtype=object) if op is None else np.asarray(op, dtype=object)
    weak = np.zeros(n, dtype=bool) if weak is None else np.asarray(weak, dtype=bool)
    name_codes, name_labels = coded(names)
    cat_codes, cat_labels = coded(cats)
    op_codes, op_labels = pd.factorize(op, use_na_sentinel=True)
    op_labels = np.append(np.asarray(op_labels, dtype=object), None)  # code -1 (no op) picks the trailing None
    op_codes = np.where(op_codes < 0, len(op_labels) - 1, op_codes)
    key = ((name_codes * len(cat_labels) + cat_codes) * len(op_labels) + op_codes) * 2 + weak
    keys, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    decided = [class_of(name_labels[name_codes[i]], cat_labels[cat_codes[i]], op_labels[op_codes[i]], bool(weak[i]))
               for i in first.tolist()]
    inverse = inverse.ravel()
    return (np.array([c for c, _ in decided], dtype=object)[inverse],
            np.array([b for _, b in decided], dtype=object)[inverse])
