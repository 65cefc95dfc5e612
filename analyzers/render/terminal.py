"""A run on the terminal: the breakdown table and the lines beneath it.

Every number comes from `RunTables` (analyzers.tables); nothing here
computes what the analysis knows, it only lays it out.
"""
from __future__ import annotations

from analyzers.noise import outlier_lines
from analyzers.render.fmt import finite, ms, num
from analyzers.tables import RunTables
from analyzers.vocabulary import PHASES, REMAINDERS

ROOFLINE_CELLS = ("GFLOP", "MB", "FLOP/B", "bound", "floor ms", "eff", "headroom ms")

# How each telemetry metric reads in a sentence: (label, scale, unit, digits)
METRIC_FORMAT = {
    "cpu_util_pct": ("CPU", 1, "%", 0), "rss_bytes": ("RSS", 1e-6, " MB", 0),
    "gpu_util_pct": ("kernel active", 1, "%", 0), "mem_util_pct": ("mem copy active", 1, "%", 0),
    "sm_clock_mhz": ("SM clock", 1, " MHz", 0), "mem_clock_mhz": ("mem clock", 1, " MHz", 0),
    "power_w": ("power", 1, " W", 0), "temp_c": ("temp", 1, " °C", 0), "mem_used_bytes": ("mem used", 1e-9, " GB", 1),
    "gpm_sm_util_pct": ("SM active", 1, "%", 0), "gpm_sm_occupancy_pct": ("occupancy", 1, "%", 0),
    "gpm_tensor_util_pct": ("tensor pipe", 1, "%", 0), "gpm_dram_bw_util_pct": ("DRAM bw", 1, "%", 0),
}


def headline(run) -> str:
    parts = [run.model]
    if run.random_weights:
        parts.append("random weights")
    if run.layers_total and run.layers_built != run.layers_total:
        parts.append(f"{run.layers_built} of {run.layers_total} layers")
    return ", ".join(parts)


def _eff(efficiency: float) -> str:
    """Above 1 a component beat its floor: the ceiling is wrong, and the cell says so rather than print it."""
    if not finite(efficiency):
        return ""
    return ">100%!" if efficiency > 1 else f"{100 * efficiency:.0f}%"


def roofline_cells(roof) -> dict[str, dict[str, str]]:
    """Per component, the cells the breakdown table adds from the roofline."""
    cells = {}
    for row in roof.itertuples(index=False):
        cells[row.component] = {
            "GFLOP": num(row.flops / 1e9), "MB": num(row.bytes / 1e6), "FLOP/B": num(row.intensity),
            "bound": row.bound[:3], "floor ms": num(row.floor_ms),
            "eff": _eff(row.efficiency),
            "headroom ms": num(row.headroom_ms),
        }
    return cells


def _grid(tables: RunTables):
    """The empty table with its columns and footers."""
    from rich.table import Table

    grid = Table(show_footer=True, pad_edge=False)
    grid.add_column("component", footer="TTFT (p50)")
    grid.add_column("ms", justify="right", footer=ms(tables.stats["p50_ms"]))
    grid.add_column("share", justify="right", footer="100.0%")
    for name in ("calls", "ms/layer", "min–max ms"):
        grid.add_column(name, justify="right")
    if tables.extrapolation is not None:
        grid.add_column(f"est. {tables.run.layers_total} layers", justify="right",
                        footer=ms(tables.extrapolation.set_index("component").loc["ttft", "estimate_ms"]))
    if tables.roofline is not None:
        for name in ROOFLINE_CELLS:
            grid.add_column(name, justify="left" if name == "bound" else "right",
                            footer=ms(tables.floor_ms) if name == "floor ms" else "")
    return grid


def _rows(tables: RunTables, grid) -> None:
    estimate = None if tables.extrapolation is None else tables.extrapolation.set_index("component")
    extra = roofline_cells(tables.roofline) if tables.roofline is not None else {}
    extra_names = ROOFLINE_CELLS if extra else ()
    outliers = set() if tables.noise is None else set(tables.noise.outliers["component"])
    for row in tables.breakdown.itertuples():
        est = [] if estimate is None else [ms(estimate.loc[row.component, "estimate_ms"])
                                           if row.component in estimate.index else ""]
        if not row.present:
            if row.component not in REMAINDERS:
                grid.add_row(row.component, "absent", *[""] * (4 + len(est) + len(extra_names)), style="dim")
            continue
        per_layer = ms(row.ms_per_layer) if finite(row.ms_per_layer) else ""
        more = est + [extra.get(row.component, {}).get(name, "") for name in extra_names]
        mark = " !" if row.component in outliers else ""  # an outlier of the median repeat: named under the table
        grid.add_row(row.component, ms(row.ms) + mark, f"{100 * row.share:.1f}%", str(row.calls) if row.calls else "",
                     per_layer, f"{ms(row.ms_min)}–{ms(row.ms_max)}", *more)


def telemetry_lines(telemetry: dict | None) -> list[str]:
    """The sampling window, then each phase's averages, or why a phase has none."""
    t = telemetry
    if not t:
        return []
    lines = [f"telemetry ({'NVML' if t.get('kind') == 'nvml' else 'process CPU and memory'}, every "
             f"{t['interval_ms']:g} ms): {t['samples']} samples over {t['window_ms']:,.0f} ms"]
    if t.get("warning"):
        lines.append(f"warning: {t['warning']}")
    short = []
    for phase in PHASES:
        rows = [r for r in t.get("attributed", []) if r.get("group") == "phase" and r.get("name") == phase]
        values = [r for r in rows if finite(r.get("value")) and r.get("metric") in METRIC_FORMAT]
        if values:
            parts = []
            for r in values:
                label, scale, unit, digits = METRIC_FORMAT[r["metric"]]
                parts.append(f"{label} {r['value'] * scale:,.{digits}f}{unit}")
            lines.append(f"  {phase}: " + ", ".join(parts) + f" ({values[0]['samples']} samples)")
        elif rows and finite(rows[0].get("covered_ms")):
            short.append(f"{phase} {rows[0]['covered_ms']:.3g} ms")
    if short:
        lines.append(f"  too short to sample at {t['interval_ms']:g} ms (fewer than 3 samples): {', '.join(short)}")
    return lines


def layer_lines(tables: RunTables) -> list[str]:
    """Label the estimate as one, and show whether the K measured layers cost about the same."""
    run, estimate = tables.run, tables.extrapolation.set_index("component")
    k, total = run.layers_built, run.layers_total
    lines = [f"estimate for all {total} layers: {ms(estimate.loc['ttft', 'estimate_ms'])} ms "
             f"(an estimate, not a measurement: per-layer components x {total}/{k}, the rest unchanged)"]
    parts = [f"{row.component} {ms(row.min_ms)}–{ms(row.max_ms)} ms (cv {100 * row.cv:.0f}%)"
             for row in tables.spread.itertuples(index=False)
             if row.component in ("attention", "mlp", "qkv_proj") and row.layers > 1]
    if parts:
        lines.append(f"  the {k} measured layers: " + ", ".join(parts))
    return lines


def summary_lines(tables: RunTables) -> list[str]:
    """The plain lines under the table: floor, TTFT spread, cold start, estimates, telemetry."""
    run, stats = tables.run, tables.stats
    lines = []
    if tables.roofline is not None:
        floor = tables.floor_ms
        lines.append(f"TTFT floor {ms(floor)} ms per component (each one's own traffic, unfused) against "
                     f"{ms(stats['p50_ms'])} ms measured ({100 * floor / stats['p50_ms']:.0f}% of the hardware's "
                     f"limit); {run.ceilings['source']} ({run.ceilings['device_name']})")
    if tables.physical_floor is not None:
        limit = tables.physical_floor
        lines.append(f"physical limit {ms(limit['floor_ms'])} ms for the whole prefill fully fused "
                     f"({100 * limit['floor_ms'] / stats['p50_ms']:.0f}% of measured; {limit['bound']}-bound: "
                     f"{limit['flops'] / 1e9:,.3g} GFLOP at peak, {limit['bytes'] / 1e6:,.4g} MB at bandwidth)")
    if tables.roofline_note:
        lines += tables.roofline_note.splitlines()  # a clock note, then a warning per wrong ceiling
    spread = f"min {ms(stats['min_ms'])}, max {ms(stats['max_ms'])}"
    if "p90_ms" in stats:
        spread += f", p90 {ms(stats['p90_ms'])}"
    lines.append(f"TTFT p50 {ms(stats['p50_ms'])} ms ({spread}; {stats['repeats']} warm repeats, {run.warmup} warmup)")
    lines.append(f"cold TTFT (first prefill of the process) {ms(stats['cold_ms'])} ms")
    if tables.noise is not None:
        lines += outlier_lines(tables.noise) + [f"noise: {tables.noise.verdict}"]
    if tables.extrapolation is not None:
        lines += layer_lines(tables)
    return lines + telemetry_lines(run.telemetry)


def render_run(tables: RunTables, console) -> None:
    """Print the breakdown; its rows sum to the TTFT line beneath them."""
    from rich.markup import escape

    run = tables.run
    console.print(f"[bold]{escape(headline(run))}[/] · n={run.seq_len} b={run.batch} · {run.dtype} · "
                  f"attn={escape(run.attn)}")
    console.print(f"{run.device}: {run.device_name}", markup=False)
    grid = _grid(tables)
    _rows(tables, grid)
    console.print(grid)
    for line in summary_lines(tables):
        console.print(line, markup=False, style="yellow" if line.startswith("warning:") else None)
    table = tables.breakdown
    remainder = table[table["component"].isin(REMAINDERS) & table["present"]]["share"].sum()
    if remainder > 0.2:
        console.print(f"[yellow]warning: {100 * remainder:.0f}% of TTFT is outside every named component: this "
                      "architecture's modules may not be recognised (see docs/reading-a-breakdown.md).[/]")
    unclaimed = tables.unclaimed
    if unclaimed:
        console.print(unclaimed, markup=False, style="yellow")
    if run.logits_kept != "last":
        console.print("[yellow]finding: the model computed logits for every position; "
                      "lm_head is timed over the whole sequence, as serving engines would not.[/]")
    if run.path:
        console.print(f"run folder: {run.path}", markup=False)
