"""`ttft-profile models`: the built-in configs, facts of published models (no weights)."""
from __future__ import annotations

from analyzers.render.console import console
from profiler.cli.errors import UsageError

COLUMNS = ("name", "type", "layers", "hidden", "heads/kv", "intermediate", "vocab", "max pos")


def run(argv: list[str]) -> int:
    from rich.table import Table

    from profiler import catalog

    if argv:
        raise UsageError(f"`ttft-profile models` takes no arguments, got {' '.join(argv)!r}.")
    table = Table(title="built-in models (configs only; weights come from a local folder or the HF cache)",
                  title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("name", "type") else "right", no_wrap=column == "name")
    for name in catalog.builtin_names():
        c = catalog.builtin_entry(name)["config"]
        heads = c["num_attention_heads"]
        table.add_row(name, c["model_type"], str(c["num_hidden_layers"]), str(c["hidden_size"]),
                      f"{heads}/{c.get('num_key_value_heads', heads)}", str(c["intermediate_size"]),
                      str(c["vocab_size"]), str(c.get("max_position_embeddings", "")))
    out = console()
    out.print(table)
    out.print(f"default: {catalog.default_model()}", markup=False)
    return 0
