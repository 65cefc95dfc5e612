"""Turn a Run into what people read: a rich table, or a JSON summary for machines."""
from __future__ import annotations

import math

from analyzers.breakdown import breakdown, ttft_stats
from analyzers.vocabulary import REMAINDERS
from analyzers.render.roofline import roofline_columns
from analyzers.cost.roofline import ttft_floor_ms
from analyzers.run import Run


def headline(run: Run) -> str:
    parts = [run.model]
    if run.random_weights:
        parts.append("random weights")
    if run.layers_total and run.layers_built != run.layers_total:
        parts.append(f"{run.layers_built} of {run.layers_total} layers")
    return ", ".join(parts)


def summary(run: Run) -> dict:
    """The machine-readable result of `--json`: stable keys, ms units."""
    table = breakdown(run)
    components = []
    for row in table.to_dict("records"):
        row["ms_per_layer"] = None if math.isnan(row["ms_per_layer"]) else row["ms_per_layer"]
        components.append(row)
    roof, _note = _roofline(run)
    return {
        "roofline": None if roof is None else roof.to_dict("records"),
        "ttft_floor_ms": None if roof is None else ttft_floor_ms(roof),
        "ceilings": run.ceilings,
        "telemetry": {k: v for k, v in (run.telemetry or {}).items() if k != "attributed"} or None,
        "model": run.model,
        "random_weights": run.random_weights,
        "layers_built": run.layers_built,
        "layers_total": run.layers_total,
        "seq_len": run.seq_len,
        "batch": run.batch,
        "dtype": run.dtype,
        "device": run.device,
        "device_name": run.device_name,
        "attn": run.attn,
        "logits_kept": run.logits_kept,
        "sampling": run.sampling,
        "ttft": ttft_stats(run),
        "components": components,
        "notices": run.notices,
        "run_dir": run.path,
    }


# How each telemetry metric reads in a sentence: (label, scale, unit, digits)
METRIC_FORMAT = {
    "cpu_util_pct": ("CPU", 1, "%", 0), "rss_bytes": ("RSS", 1e-6, " MB", 0),
    "gpu_util_pct": ("GPU util", 1, "%", 0), "mem_util_pct": ("mem util", 1, "%", 0),
    "sm_clock_mhz": ("SM clock", 1, " MHz", 0), "mem_clock_mhz": ("mem clock", 1, " MHz", 0),
    "power_w": ("power", 1, " W", 0), "temp_c": ("temp", 1, " °C", 0), "mem_used_bytes": ("mem used", 1e-9, " GB", 1),
    "gpm_sm_util_pct": ("SM active", 1, "%", 0), "gpm_sm_occupancy_pct": ("occupancy", 1, "%", 0),
    "gpm_tensor_util_pct": ("tensor pipe", 1, "%", 0), "gpm_dram_bw_util_pct": ("DRAM bw", 1, "%", 0),
}


def telemetry_lines(run: Run) -> list[str]:
    """The sampling window, then each phase's averages, or why a phase has none."""
    t = run.telemetry
    if not t:
        return []
    lines = [f"telemetry ({'NVML' if t['kind'] == 'nvml' else 'process CPU and memory'}, every "
             f"{t['interval_ms']:g} ms): {t['samples']} samples over {t['window_ms']:,.0f} ms"]
    if t.get("warning"):
        lines.append(f"warning: {t['warning']}")
    short = []
    for phase in ("h2d", "forward", "sampling", "d2h"):
        rows = [r for r in t.get("attributed", []) if r["group"] == "phase" and r["name"] == phase]
        values = [r for r in rows if r["value"] == r["value"] and r["metric"] in METRIC_FORMAT]
        if values:
            parts = []
            for r in values:
                label, scale, unit, digits = METRIC_FORMAT[r["metric"]]
                parts.append(f"{label} {r['value'] * scale:,.{digits}f}{unit}")
            lines.append(f"  {phase}: " + ", ".join(parts) + f" ({values[0]['samples']} samples)")
        elif rows:
            short.append(f"{phase} {rows[0]['covered_ms']:.3g} ms")
    if short:
        lines.append(f"  too short to sample at {t['interval_ms']:g} ms (fewer than 3 samples): {', '.join(short)}")
    return lines


def _layer_estimate(run: Run):
    """Full-model estimate per component when only K of L layers were built, else None."""
    if not run.layers_total or run.layers_built >= run.layers_total:
        return None
    from analyzers.layers import layer_extrapolation

    try:
        return layer_extrapolation(run).set_index("component")
    except ValueError:
        return None


def layer_lines(run: Run, estimate) -> list[str]:
    """Label the estimate as one, and show whether the K measured layers cost about the same."""
    from analyzers.layers import layer_spread

    k, total = run.layers_built, run.layers_total
    lines = [f"estimate for all {total} layers: {_ms(estimate.loc['ttft', 'estimate_ms'])} ms "
             f"(an estimate, not a measurement: per-layer components x {total}/{k}, the rest unchanged)"]
    spread = layer_spread(run)
    parts = []
    for row in spread.itertuples(index=False):
        if row.component in ("attention", "mlp", "qkv_proj") and row.layers > 1:
            parts.append(f"{row.component} {_ms(row.min_ms)}–{_ms(row.max_ms)} ms (cv {100 * row.cv:.0f}%)")
    if parts:
        lines.append(f"  the {k} measured layers: " + ", ".join(parts))
    return lines


def _roofline(run: Run):
    """(roofline table or None, a line saying why there is none)."""
    if not run.ceilings:
        return None, "no roofline: no ceilings for this device; run `ttft-profile calibrate` once, or pass --gpu NAME"
    from analyzers.cost.roofline import effective_ceilings, run_roofline

    try:
        return run_roofline(run), effective_ceilings(run)[1]
    except ValueError as exc:
        return None, f"no roofline: {exc}"


def _ms(value: float) -> str:
    return f"{value:,.3f}" if value < 10 else f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"


def render_table(run: Run, console) -> None:
    """Print the breakdown with rich; rows sum to the TTFT line beneath them."""
    from rich.table import Table

    stats = ttft_stats(run)
    table = breakdown(run)
    console.print(f"[bold]{headline(run)}[/] · n={run.seq_len} b={run.batch} · {run.dtype} · attn={run.attn}")
    console.print(f"{run.device}: {run.device_name}")
    grid = Table(show_footer=True, pad_edge=False)
    grid.add_column("component", footer="TTFT (p50)")
    grid.add_column("ms", justify="right", footer=_ms(stats["p50_ms"]))
    grid.add_column("share", justify="right", footer="100.0%")
    grid.add_column("calls", justify="right")
    grid.add_column("ms/layer", justify="right")
    grid.add_column("min–max ms", justify="right")
    estimate = _layer_estimate(run)
    if estimate is not None:
        grid.add_column(f"est. {run.layers_total} layers", justify="right",
                        footer=_ms(estimate.loc["ttft", "estimate_ms"]))
    roof, roof_note = _roofline(run)
    extra = roofline_columns(roof) if roof is not None else {}
    extra_names = ["GFLOP", "MB", "FLOP/B", "bound", "floor ms", "eff", "headroom ms"] if extra else []
    for name in extra_names:
        footer = _ms(ttft_floor_ms(roof)) if name == "floor ms" else ""
        grid.add_column(name, justify="left" if name == "bound" else "right", footer=footer)
    for row in table.itertuples():
        est_cells = []
        if estimate is not None:
            est_cells = [_ms(estimate.loc[row.component, "estimate_ms"]) if row.component in estimate.index else ""]
        if not row.present:
            if row.component in REMAINDERS:
                continue
            grid.add_row(row.component, "absent", *[""] * (4 + len(est_cells) + len(extra_names)), style="dim")
            continue
        per_layer = "" if math.isnan(row.ms_per_layer) else _ms(row.ms_per_layer)
        more = est_cells + [extra.get(row.component, {}).get(name, "") for name in extra_names]
        grid.add_row(row.component, _ms(row.ms), f"{100 * row.share:.1f}%",
                     str(row.calls) if row.calls else "", per_layer,
                     f"{_ms(row.ms_min)}–{_ms(row.ms_max)}", *more)
    console.print(grid)
    if roof is not None:
        floor = ttft_floor_ms(roof)
        console.print(f"TTFT floor {_ms(floor)} ms against {_ms(stats['p50_ms'])} ms measured "
                      f"({100 * floor / stats['p50_ms']:.0f}% of the hardware's limit); "
                      f"{run.ceilings['source']} ({run.ceilings['device_name']})")
    if roof_note:
        console.print(roof_note)
    spread = f"min {_ms(stats['min_ms'])}, max {_ms(stats['max_ms'])}"
    if "p90_ms" in stats:
        spread += f", p90 {_ms(stats['p90_ms'])}"
    console.print(f"TTFT p50 {_ms(stats['p50_ms'])} ms ({spread}; {stats['repeats']} warm repeats, "
                  f"{run.warmup} warmup)")
    console.print(f"cold TTFT (first prefill of the process) {_ms(stats['cold_ms'])} ms")
    if estimate is not None:
        for line in layer_lines(run, estimate):
            console.print(line, markup=False)
    for line in telemetry_lines(run):
        console.print(line, markup=False)
    remainder = table[table["component"].isin(REMAINDERS) & table["present"]]["share"].sum()
    if remainder > 0.2:
        console.print(f"[yellow]warning: {100 * remainder:.0f}% of TTFT is outside every named component: this "
                      "architecture's modules may not be recognised (see docs/reading-a-breakdown.md).[/]")
    if run.logits_kept != "last":
        console.print("[yellow]finding: the model computed logits for every position; "
                      "lm_head is timed over the whole sequence, as serving engines would not.[/]")
    if run.path:
        console.print(f"run folder: {run.path}")
