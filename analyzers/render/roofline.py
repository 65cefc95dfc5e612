"""Terminal rendering of rooflines and predictions (rich); numbers come from analyzers.cost.roofline."""
from __future__ import annotations

import math

from analyzers.render.console import console as make_console


def _num(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.{digits - 1}f}"


def render_prediction(model: str, seq_len: int, batch: int, dtype: str, gpu_name: str, table, totals: dict,
                      console=None) -> None:
    from rich.table import Table

    console = console or make_console()
    console.print(f"[bold]{model}[/] · n={seq_len} b={batch} · {dtype} · {gpu_name} (datasheet ceilings)")
    grid = Table(show_footer=True, pad_edge=False)
    estimate = "estimate_ms" in table.columns
    grid.add_column("component", footer="TTFT")
    grid.add_column("GFLOP", justify="right", footer=_num(totals["flops"] / 1e9))
    grid.add_column("GB", justify="right", footer=_num(totals["bytes"] / 1e9))
    grid.add_column("FLOP/B", justify="right")
    grid.add_column("bound", justify="left")
    grid.add_column("floor ms", justify="right", footer=_num(totals["floor_ms"]))
    grid.add_column("share", justify="right", footer="100.0%")
    if estimate:
        grid.add_column("efficiency", justify="right")
        grid.add_column("estimate ms", justify="right", footer=_num(totals["estimate_ms"]))
    for row in table.itertuples(index=False):
        cells = [row.component, _num(row.flops / 1e9), _num(row.bytes / 1e9), _num(row.intensity),
                 row.bound, _num(row.floor_ms), f"{100 * row.share_of_floor:.1f}%"]
        if estimate:
            cells += [_num(row.efficiency, 2), _num(row.estimate_ms)]
        grid.add_row(*cells)
    console.print(grid)
    line = (f"floor TTFT {_num(totals['floor_ms'])} ms: {totals['flops'] / 1e12:,.2f} TFLOP useful "
            f"({totals['flops_executed'] / 1e12:,.2f} executed), {totals['bytes'] / 1e9:,.2f} GB")
    console.print(line)
    if estimate:
        console.print(f"estimate with the given efficiencies: {_num(totals['estimate_ms'])} ms")


def roofline_columns(roof) -> dict[str, dict[str, str]]:
    """Per component, the cells the breakdown table adds: GFLOP, MB, bound, floor ms, efficiency."""
    cells = {}
    for row in roof.itertuples(index=False):
        cells[row.component] = {
            "GFLOP": _num(row.flops / 1e9),
            "MB": _num(row.bytes / 1e6),
            "FLOP/B": _num(row.intensity),
            "bound": row.bound[:3],
            "floor ms": _num(row.floor_ms),
            "eff": "" if math.isnan(row.efficiency) else f"{100 * row.efficiency:.0f}%",
            "headroom ms": _num(row.headroom_ms),
        }
    return cells
