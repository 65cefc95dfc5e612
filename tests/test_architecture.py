"""The codebase's shape, checked: small files, short functions, public names only across modules.

import-linter (run by `make test`) checks the layering and cycles; these are the rules it cannot see.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for pkg in ("profiler", "analyzers") for p in (ROOT / pkg).rglob("*.py"))
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_file_is_small_and_its_functions_fit_a_screen(path):
    source = path.read_text()
    assert source.count("\n") <= MAX_FILE_LINES, f"{path.name} has {source.count(chr(10))} lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: {', '.join(long)}"


def test_no_module_imports_another_modules_private_name():
    modules = {_module(p) for p in SOURCES}
    found = []
    for path in SOURCES:
        me = _module(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in modules and node.module != me and not node.level:
                found += [f"{me} takes {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, found


def test_the_checker_sees_a_violation(tmp_path):
    """The AST rule above must be able to fail: a function of 61 lines is caught."""
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    tree = ast.parse(f"def f():\n{body}\n")
    node = tree.body[0]
    assert node.end_lineno - node.lineno + 1 == 61 > MAX_FUNCTION_LINES
