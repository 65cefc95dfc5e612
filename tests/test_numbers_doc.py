"""docs/numbers.md names the one function behind every number: those functions exist, and no column is missing.

The functions are resolved in a process where `import torch` fails: every number a user sees is
computed by code that runs on a laptop with only a run folder (the capture-side entries name
torch-free modules too).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from analyzers.cost.ceilings import Ceilings
from analyzers.render.terminal import ROOFLINE_CELLS
from analyzers.run import Run
from analyzers.store import save_run
from analyzers.tables import compute_tables
from tests.conftest import ROOT, python_without_torch
from tests.test_breakdown import make_run, row

DOC = ROOT / "docs" / "numbers.md"
# `package.module:function` or `package.module:Class.method`, in backticks
NAMED = re.compile(r"`((?:analyzers|profiler)(?:\.\w+)+):(\w+(?:\.\w+)*)`")
RUN_FILES = ("breakdown.csv", "breakdown_layers.csv", "roofline.csv")


def doc_text() -> str:
    return DOC.read_text()


def named_functions() -> list[tuple[str, str]]:
    return sorted(set(NAMED.findall(doc_text())))


def test_the_doc_names_functions():
    names = named_functions()
    assert len(names) > 40, "docs/numbers.md should name the function behind each number as `module:function`"
    modules = {module for module, _ in names}
    for needed in ("analyzers.tables", "analyzers.components", "analyzers.cost.roofline", "analyzers.trace.tables",
                   "analyzers.diff", "analyzers.scaling", "analyzers.sweep", "analyzers.cost.predict"):
        assert needed in modules


def test_every_named_function_exists_without_torch():
    code = (
        "import importlib, json\n"
        f"names = {json.dumps(named_functions())}\n"
        "missing = []\n"
        "for module, attr in names:\n"
        "    try:\n"
        "        obj = importlib.import_module(module)\n"
        "        for part in attr.split('.'):\n"
        "            obj = getattr(obj, part)\n"
        "        if not callable(obj):\n"
        "            missing.append(f'{module}:{attr} is not callable')\n"
        "    except Exception as exc:\n"
        "        missing.append(f'{module}:{attr}: {type(exc).__name__}: {exc}')\n"
        "print(json.dumps(missing))\n"
    )
    done = python_without_torch(code)
    assert done.returncode == 0, done.stderr
    missing = json.loads(done.stdout.strip().splitlines()[-1])
    assert missing == [], "docs/numbers.md names functions that do not exist (or need torch):\n" + "\n".join(missing)


def synthetic_run() -> Run:
    """Two of tiny-llama's four layers, three repeats, with ceilings: every table and file exists."""
    ms = 1_000_000
    rows = []
    for r in range(3):
        rows += [row(r, "h2d", ms // 100), row(r, "embedding", ms), row(r, "norm", ms // 2, layer=0),
                 row(r, "attention", (4 + r) * ms, layer=0), row(r, "attention", 5 * ms, layer=1),
                 row(r, "mlp", 6 * ms, layer=0), row(r, "mlp", 7 * ms, layer=1),
                 row(r, "attention", ms // 10, calls=2, detail="mask"), row(r, "lm_head", ms),
                 row(r, "sampling", ms // 10), row(r, "d2h", ms // 100)]
    run = make_run([30 * ms, 31 * ms, 32 * ms], rows,
                   present=("h2d", "embedding", "norm", "attention", "mlp", "lm_head", "sampling", "d2h"))
    run.config = json.loads((ROOT / "profiler" / "data" / "models.json").read_text())["models"]["tiny-llama"]["config"]
    run.layers_built, run.layers_total = 2, 4
    run.ceilings = Ceilings("test device", {"float32": 1e11}, 1e10, "test ceilings").to_dict()
    return run


def test_every_csv_column_is_documented(tmp_path: Path):
    run = synthetic_run()
    tables = compute_tables(run)
    assert tables.roofline is not None and tables.extrapolation is not None
    save_run(run, tmp_path, tables)
    text = doc_text()
    for name in RUN_FILES:
        header = (tmp_path / name).read_text().splitlines()[0].split(",")
        assert name in text
        undocumented = [column for column in header if f"`{column}`" not in text]
        assert undocumented == [], f"{name} columns missing from docs/numbers.md: {undocumented}"


@pytest.mark.parametrize("title", ROOFLINE_CELLS)
def test_every_roofline_column_title_is_documented(title: str):
    assert f"`{title}`" in doc_text()
