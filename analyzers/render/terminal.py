"""A run on the terminal: the headline, the breakdown table and the lines beneath it.

Every number comes from `RunTables` (analyzers.tables); nothing here
computes what the analysis knows, it only lays it out.

The table has three column sets, so that no number is ever squeezed into an ellipsis:
NARROW (component, ms, share, floor ms, eff) fits 80 columns; MEDIUM adds ms/layer, min–max ms,
the layer estimate (`--layers`), bound and headroom ms and fits 120; WIDE (`--wide`) is every
column (calls, GFLOP, MB, FLOP/B too). The default is chosen by width, not by a flag: MEDIUM where its
natural width fits the console (a terminal's own width, `COLUMNS`, or 200 columns in a pipe:
analyzers.render.console), else NARROW. `--wide` prints everything at its natural width even on
a narrower terminal, which then wraps the lines rather than cut a number. `--json` holds every
number whatever the width.
"""
from __future__ import annotations

from analyzers.noise import outlier_lines
from analyzers.render.chunks import render_chunks
from analyzers.render.fmt import finite, ms, num, repeats_phrase
from analyzers.render.headline import headline_sentence
from analyzers.tables import RunTables
from analyzers.vocabulary import PHASES, QUIET_WHEN_ABSENT, REMAINDERS

ROOFLINE_CELLS = ("GFLOP", "MB", "FLOP/B", "bound", "floor ms", "eff", "headroom ms")
EST = "est."  # the layer estimate's column, titled "est. L layers"
NARROW = ("component", "ms", "share", "floor ms", "eff")
MEDIUM = ("component", "ms", "share", "ms/layer", "min–max ms", EST, "bound", "floor ms", "eff", "headroom ms")
WIDE = ("component", "ms", "share", "calls", "ms/layer", "min–max ms", EST, *ROOFLINE_CELLS)
TOP_FINDINGS = 3
UNLIMITED = 10_000  # columns: a measure no table reaches

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
    if run.chunk:
        parts.append(f"chunked by {run.chunk:,} tokens")
    if run.padding:
        parts.append(f"{run.padding['pad_tokens']:,} of {run.padding['tokens']:,} positions padding")
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


def _cells(tables: RunTables) -> list[tuple[dict[str, str], str | None]]:
    """Every cell of every row, by column name; a column set picks from them (absent rows print dim)."""
    estimate = None if tables.extrapolation is None else tables.extrapolation.set_index("component")
    extra = roofline_cells(tables.roofline) if tables.roofline is not None else {}
    outliers = set() if tables.noise is None else set(tables.noise.outliers["component"])
    rows = []
    for row in tables.breakdown.itertuples():
        if not row.present:
            if row.component not in QUIET_WHEN_ABSENT:
                rows.append(({"component": row.component, "ms": "absent"}, "dim"))
            continue
        mark = " !" if row.component in outliers else ""  # an outlier of the median repeat: named under the table
        cells = {"component": row.component, "ms": ms(row.ms) + mark, "share": f"{100 * row.share:.1f}%",
                 "calls": str(row.calls) if row.calls else "",
                 "ms/layer": ms(row.ms_per_layer) if finite(row.ms_per_layer) else "",
                 "min–max ms": f"{ms(row.ms_min)}–{ms(row.ms_max)}"}
        if estimate is not None and row.component in estimate.index:
            cells[EST] = ms(estimate.loc[row.component, "estimate_ms"])
        cells.update(extra.get(row.component, {}))
        rows.append((cells, None))
    return rows


def _footers(tables: RunTables) -> dict[str, str]:
    footers = {"component": "TTFT (p50)", "ms": ms(tables.stats["p50_ms"]), "share": "100.0%"}
    if tables.extrapolation is not None:
        footers[EST] = ms(tables.extrapolation.set_index("component").loc["ttft", "estimate_ms"])
    if tables.roofline is not None:
        footers["floor ms"] = ms(tables.floor_ms)
    return footers


def _grid(tables: RunTables, names: tuple[str, ...]):
    """The table of these columns, less those the run has no numbers for (no roofline, no estimate).

    no_wrap everywhere: a column set is only printed where its natural width fits, so rich never
    has to squeeze a cell, and a number is never folded or cut.
    """
    from rich.table import Table

    names = tuple(n for n in names if (n != EST or tables.extrapolation is not None)
                  and (n not in ROOFLINE_CELLS or tables.roofline is not None))
    footers = _footers(tables)
    grid = Table(show_footer=True, pad_edge=False)
    for name in names:
        title = f"est. {tables.run.layers_total} layers" if name == EST else name
        grid.add_column(title, justify="left" if name in ("component", "bound") else "right",
                        footer=footers.get(name, ""), no_wrap=True)
    for cells, style in _cells(tables):
        grid.add_row(*[cells.get(name, "") for name in names], style=style)
    return grid


def breakdown_grid(tables: RunTables, console, wide: bool = False):
    """`--wide`: every column; otherwise the medium set where it fits the console, else the narrow one."""
    if wide:
        return _grid(tables, WIDE)
    medium = _grid(tables, MEDIUM)
    return medium if natural_width(console, medium) <= console.width else _grid(tables, NARROW)


def natural_width(console, renderable) -> int:
    """Its width with every cell on one line: measured without the console's own limit, which clamps."""
    return console.measure(renderable, options=console.options.update(max_width=UNLIMITED)).maximum


def print_whole(console, renderable) -> None:
    """Print at the renderable's natural width even where the console is narrower (`--wide` at 80
    columns, or a terminal narrower than the narrow set): the terminal wraps the lines, but rich
    never cuts a number to an ellipsis."""
    need, width = natural_width(console, renderable), console.width
    if need <= width:
        console.print(renderable)
        return
    console.width = need
    try:
        console.print(renderable)
    finally:
        console.width = width


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
    lines.append(f"TTFT p50 {ms(stats['p50_ms'])} ms ({spread}; {repeats_phrase(stats['repeats'], run.warmup)})")
    lines.append(f"cold TTFT (first prefill of the process) {ms(stats['cold_ms'])} ms")
    if tables.noise is not None:
        lines += outlier_lines(tables.noise) + [f"noise: {tables.noise.verdict}"]
    if tables.extrapolation is not None:
        lines += layer_lines(tables)
    return lines + telemetry_lines(run.telemetry)


def finding_lines(findings: list, top: int = TOP_FINDINGS) -> list[str]:
    """The costliest findings of prefill lint (analyzers.lint), each with the ms at stake and its fix."""
    if not findings:
        return []
    shown = findings[:top]
    more = f" (top {len(shown)} of {len(findings)}; every one in --json)" if len(findings) > len(shown) else ""
    lines = [f"findings, costliest first{more}:"]
    for i, finding in enumerate(shown, 1):
        at_stake = f" ({ms(finding.ms)} ms at stake)" if finite(finding.ms) else ""
        lines += [f"{i}. {finding.title}{at_stake}", f"   fix: {finding.fix}"]
    return lines


def render_run(tables: RunTables, console, wide: bool = False) -> None:
    """Print the headline, the breakdown (its rows sum to the TTFT line beneath them), what to fix."""
    from rich.markup import escape

    run = tables.run
    console.print(headline_sentence(tables), markup=False, style="bold")
    console.print(f"{escape(headline(run))} · n={run.seq_len} b={run.batch} · {run.dtype} · attn={escape(run.attn)}")
    console.print(f"{run.device}: {run.device_name}", markup=False)
    print_whole(console, breakdown_grid(tables, console, wide))
    render_chunks(run, console)  # a chunked prefill: its chunks under the whole breakdown
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
    for line in finding_lines(tables.findings):
        console.print(line, markup=False, style="yellow" if line[:1].isdigit() else None)
    if run.path:
        console.print(f"run folder: {run.path}", markup=False)
