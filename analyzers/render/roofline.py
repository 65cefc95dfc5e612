"""Terminal rendering of predictions (rich); numbers come from analyzers.cost.predict."""
from __future__ import annotations

from analyzers.cost.predict import Prediction
from analyzers.render.fmt import num


def render_prediction(prediction: Prediction, console) -> None:
    """The floor per component on a GPU the user may not have; an estimate when efficiencies are given."""
    from rich.markup import escape
    from rich.table import Table

    p, table, totals = prediction, prediction.table, prediction.totals
    console.print(f"[bold]{escape(p.model)}[/] · n={p.seq_len} b={p.batch} · {p.dtype} · {escape(p.gpu_name)} "
                  "(datasheet ceilings)")
    grid = Table(show_footer=True, pad_edge=False)
    estimate = "estimate_ms" in table.columns
    grid.add_column("component", footer="TTFT")
    grid.add_column("GFLOP", justify="right", footer=num(totals["flops"] / 1e9))
    grid.add_column("GB", justify="right", footer=num(totals["bytes"] / 1e9))
    grid.add_column("FLOP/B", justify="right")
    grid.add_column("bound", justify="left")
    grid.add_column("floor ms", justify="right", footer=num(totals["floor_ms"]))
    grid.add_column("share", justify="right", footer="100.0%")
    if estimate:
        grid.add_column("efficiency", justify="right")
        grid.add_column("estimate ms", justify="right", footer=num(totals["estimate_ms"]))
    for row in table.itertuples(index=False):
        cells = [row.component, num(row.flops / 1e9), num(row.bytes / 1e9), num(row.intensity),
                 row.bound, num(row.floor_ms), f"{100 * row.share_of_floor:.1f}%"]
        if estimate:
            cells += [num(row.efficiency, 2), num(row.estimate_ms)]
        grid.add_row(*cells)
    console.print(grid)
    console.print(f"floor TTFT {num(totals['floor_ms'])} ms, per component (each one's own traffic: the model as "
                  f"written, unfused): {totals['flops'] / 1e12:,.2f} TFLOP useful "
                  f"({totals['flops_executed'] / 1e12:,.2f} executed), {totals['bytes'] / 1e9:,.2f} GB")
    console.print(physical_line(totals))
    if estimate:
        console.print(f"estimate with the given efficiencies: {num(totals['estimate_ms'])} ms")


def physical_line(totals: dict) -> str:
    """The whole prefill's physical limit, named apart from the per-component floor it sits under."""
    return (f"physical limit {num(totals['physical_floor_ms'])} ms, whole prefill fully fused (a lower bound for "
            f"any engine on these ceilings), {totals['physical_bound']}-bound: "
            f"{totals['physical_flops'] / 1e12:,.2f} TFLOP at peak {num(totals['physical_compute_ms'])} ms; "
            f"{totals['physical_bytes'] / 1e9:,.2f} GB (weights once, KV cache once, token ids) at bandwidth "
            f"{num(totals['physical_memory_ms'])} ms")


def prediction_json(prediction: Prediction) -> dict:
    """What `predict --json` prints."""
    p = prediction
    return {"model": p.model, "seq_len": p.seq_len, "batch": p.batch, "dtype": p.dtype, "gpu": p.gpu_key,
            "gpu_name": p.gpu_name, "totals": p.totals, "components": p.table.to_dict("records")}
