"""`ttft-profile models`: the built-in configs, facts of published models (no weights), with their
parameter counts (total and, for MoE, active per token) from the same cost model `predict` uses.

The table takes the columns that fit the terminal, as the breakdown does: name, parameters and
context at 80 columns; type, family, width and heads too from 120, or always with --wide.
"""
from __future__ import annotations

from analyzers.render.console import console
from profiler.cli.errors import ArgParser

NARROW = ("name", "params", "active", "layers", "context")
WIDE = ("name", "type", "family", "params", "active", "layers", "hidden", "heads/kv", "context")
WIDE_MIN_WIDTH = 120


def _parser() -> ArgParser:
    parser = ArgParser(prog="ttft-profile models", description=(
        "List the built-in models: published configs (no weights) and tiny test configs, with parameter counts."))
    parser.add_argument("--wide", action="store_true", help="every column, whatever the terminal's width")
    return parser


def _count(n: int) -> str:
    """Parameters as a reader compares them: 124.4M, 8.19B."""
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.4g}M"


def run(argv: list[str]) -> int:
    from rich.table import Table

    from analyzers.cost.families import describe
    from analyzers.cost.flops import active_params, total_params
    from analyzers.cost.model_spec import ModelSpec
    from profiler import catalog

    args = _parser().parse_args(argv)
    out = console()
    columns = WIDE if args.wide or out.width >= WIDE_MIN_WIDTH else NARROW
    table = Table(title="built-in models (configs only; weights come from a local folder or the HF cache)",
                  title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("name", "type", "family") else "right", no_wrap=True)
    for name in catalog.builtin_names():
        spec = ModelSpec.from_config(catalog.builtin_entry(name)["config"])
        total, active = total_params(spec), active_params(spec)
        cells = {"name": name, "type": spec.model_type, "family": describe(spec), "params": _count(total),
                 "active": _count(active) if active != total else "", "layers": str(spec.layers),
                 "hidden": str(spec.hidden), "heads/kv": f"{spec.heads}/{spec.kv_heads}",
                 "context": str(spec.max_position_embeddings or "")}
        table.add_row(*(cells[c] for c in columns))
    out.print(table, crop=False)
    out.print(f"default: {catalog.default_model()}", markup=False)
    return 0
