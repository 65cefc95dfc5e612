"""`ttft-profile models`: the built-in configs, facts of published models (no weights), with their
parameter counts (total and, for MoE, active per token) from the same cost model `predict` uses."""
from __future__ import annotations

from analyzers.render.console import console
from profiler.cli.errors import UsageError

COLUMNS = ("name", "type", "family", "params", "active", "layers", "hidden", "heads/kv", "context")


def run(argv: list[str]) -> int:
    from rich.table import Table

    from analyzers.cost.families import describe
    from analyzers.cost.flops import active_params, total_params
    from analyzers.cost.model_spec import ModelSpec
    from profiler import catalog

    if argv:
        raise UsageError(f"`ttft-profile models` takes no arguments, got {' '.join(argv)!r}.")
    table = Table(title="built-in models (configs only; weights come from a local folder or the HF cache)",
                  title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("name", "type") else "right", no_wrap=column == "name")
    for name in catalog.builtin_names():
        spec = ModelSpec.from_config(catalog.builtin_entry(name)["config"])
        table.add_row(name, spec.model_type, describe(spec), f"{total_params(spec):,}", f"{active_params(spec):,}",
                      str(spec.layers), str(spec.hidden), f"{spec.heads}/{spec.kv_heads}",
                      str(spec.max_position_embeddings or ""))
    out = console()
    out.print(table)
    out.print(f"default: {catalog.default_model()}", markup=False)
    return 0
