"""A run's part of the report: its facts, the breakdown as a table, the findings, and its figures.

Every number comes from `RunTables` (analyzers.tables), computed once; this module only chooses
the cells and formats them as the terminal does (`fmt.ms`, shares with one decimal, the
roofline's efficiency cell from `terminal.roofline_cells`), so the page and the terminal agree.
"""
from __future__ import annotations

from analyzers.cost.roofline import effective_ceilings
from analyzers.noise import outlier_lines
from analyzers.render import figures
from analyzers.render.chunks import chunk_table
from analyzers.render.fmt import finite, ms, repeats_phrase, share
from analyzers.render.report_parts import Place, esc, figure, figure_block, frame_table, note, notice, table
from analyzers.render.report_telemetry import telemetry_section
from analyzers.render.terminal import roofline_cells
from analyzers.tables import RunTables
from analyzers.vocabulary import QUIET_WHEN_ABSENT

RANDOM_WEIGHTS = ("random weights: the model was built from its config, so its timings hold for a dense model "
                  "of this shape but the tokens it produces are meaningless")


def facts(tables: RunTables) -> str:
    """What was measured and how: the lines a reader checks before trusting a number."""
    run, stats = tables.run, tables.stats
    spread = f"min {ms(stats['min_ms'])}, max {ms(stats['max_ms'])}"
    if "p90_ms" in stats:
        spread += f", p90 {ms(stats['p90_ms'])}"
    rows = [["model", run.model + (f" ({run.model_origin})" if run.model_origin else "")],
            ["weights", "random (built from the config)" if run.random_weights else "loaded"],
            ["device", f"{run.device}: {run.device_name}"], ["dtype", run.dtype],
            ["prompt", f"n={run.seq_len:,} tokens, batch {run.batch}"], ["attention kernel", run.attn],
            ["clock", run.timing], ["logits kept", run.logits_kept],
            ["TTFT p50", f"{ms(stats['p50_ms'])} ms ({spread}; {repeats_phrase(stats['repeats'], run.warmup)})"],
            ["cold TTFT", f"{ms(stats['cold_ms'])} ms (the first prefill of the process)"]]
    if run.chunk:
        rows.append(["chunked prefill", f"{run.chunk:,} tokens per forward ({len(run.chunk_tokens) or '?'} chunks)"])
    if run.layers_total and run.layers_built != run.layers_total:
        rows.append(["layers", f"{run.layers_built} of {run.layers_total} built"])
    rows += _floor_rows(tables)
    if tables.noise is not None:
        rows.append(["noise", tables.noise.verdict])
    out = [table(["", ""], rows, text_columns=(0, 1)).replace("<table>", "<table class='facts'>", 1)]
    out += [notice(text) for text in run.notices]
    if run.random_weights and not any("random weights" in text for text in run.notices):
        out.append(notice(RANDOM_WEIGHTS))
    if tables.unclaimed:
        out.append(notice(tables.unclaimed))
    if tables.noise is not None:
        out += [note(line) for line in outlier_lines(tables.noise)]
    if tables.roofline_note:
        out += [note(line) for line in tables.roofline_note.splitlines()]
    return "\n".join(out)


def _floor_rows(tables: RunTables) -> list[list[str]]:
    p50, rows = tables.stats["p50_ms"], []
    if tables.floor_ms is not None:
        ceilings = tables.run.ceilings or {}
        rows.append(["TTFT floor", f"{ms(tables.floor_ms)} ms, each component at its own roof, unfused "
                     f"({100 * tables.floor_ms / p50:.0f}% of measured); {ceilings.get('source', '')} "
                     f"({ceilings.get('device_name', '')})"])
    if tables.physical_floor is not None:
        limit = tables.physical_floor
        rows.append(["physical limit", f"{ms(limit['floor_ms'])} ms for the whole prefill fully fused "
                     f"({100 * limit['floor_ms'] / p50:.0f}% of measured; {limit['bound']}-bound)"])
    return rows


def breakdown_table(tables: RunTables) -> str:
    """The breakdown: one row per component in forward order, summing to the TTFT in the footer."""
    roof = {} if tables.roofline is None else roofline_cells(tables.roofline)
    bound = {} if tables.roofline is None else dict(zip(tables.roofline["component"], tables.roofline["bound"],
                                                        strict=True))
    estimate = None if tables.extrapolation is None else tables.extrapolation.set_index("component")["estimate_ms"]
    header = ["component", "ms", "share", "calls", "ms/layer", "min–max ms"]
    header += [f"est. {tables.run.layers_total} layers ms"] if estimate is not None else []
    header += ["floor ms", "efficiency", "headroom ms", "bound"] if roof else []
    rows, classes = [], []
    for row in tables.breakdown.itertuples(index=False):
        if not row.present and row.component in QUIET_WHEN_ABSENT:
            continue  # the remainder row of the other clock: never part of this run
        cells = [row.component] + (["absent", "", "", "", ""] if not row.present else [
            ms(row.ms), share(row.share), str(row.calls) if row.calls else "",
            ms(row.ms_per_layer) if finite(row.ms_per_layer) else "", f"{ms(row.ms_min)}–{ms(row.ms_max)}"])
        if estimate is not None:
            cells.append(ms(estimate[row.component]) if row.present and row.component in estimate.index else "")
        if roof:
            mine = roof.get(row.component, {})
            cells += [mine.get("floor ms", ""), mine.get("eff", ""), mine.get("headroom ms", ""),
                      bound.get(row.component, "")]
        rows.append(cells)
        classes.append("" if row.present else "absent")
    footer = ["TTFT (p50)", ms(tables.stats["p50_ms"]), "100.0%", "", "", ""]
    footer += [ms(estimate["ttft"])] if estimate is not None else []
    footer += [ms(tables.floor_ms), "", "", ""] if roof else []
    return table(header, rows, footer=footer, row_classes=classes, text_columns=(0, len(header) - 1) if roof else (0,))


def findings(tables: RunTables) -> str:
    """What to fix first, costliest first, each with its evidence and the ms it would win back."""
    if not tables.findings:
        return "<h2>Findings</h2>" + note("No finding: none of the lint rules fired on this run.")
    items = []
    for f in tables.findings:
        stake = f"up to {ms(f.ms)} ms at stake" if finite(f.ms) else "ms at stake unknown from this run"
        items.append(f"<li><strong>{esc(f.title)}</strong> <span class='at-stake'>({esc(stake)})</span><br>"
                     f"<span class='note'>evidence: {esc(f.evidence)}</span><br>fix: {esc(f.fix)}</li>")
    return "<h2>Findings</h2><ol class='findings'>" + "".join(items) + "</ol>"


def run_document(tables: RunTables, place: Place) -> list[str]:
    """Facts, breakdown, findings, then the figures, in the order a reader asks the questions."""
    return [facts(tables), "<h2>Breakdown</h2>",
            note("Exclusive time of each component in the median repeat; the rows sum to the TTFT p50."),
            breakdown_table(tables), *chunk_section(tables.run), findings(tables), *run_figures(tables, place)]


def chunk_section(run) -> list[str]:
    """A chunked prefill's chunks, as the terminal lists them (analyzers.render.chunks.chunk_table)."""
    rows = chunk_table(run)
    if not rows:
        return []
    cells = [[r["chunk"], f"{r['first_token']:,}–{r['first_token'] + r['tokens'] - 1:,}", f"{r['tokens']:,}",
              ms(r["ms"]), share(r["share"])] for r in rows]
    return ["<h2>Chunks</h2>", note(f"Chunked prefill: {len(rows)} forwards of {run.chunk:,} tokens through the KV "
                                     "cache; the first includes copying the ids in, the last sampling and copying "
                                     "the token out, so the chunks sum to the TTFT p50."),
            table(["chunk", "tokens", "count", "ms", "share"], cells,
                  footer=["total", "", "", ms(sum(r["ms"] for r in rows)), share(sum(r["share"] for r in rows))])]


def run_figures(tables: RunTables, place: Place) -> list[str]:
    run, stats = tables.run, tables.stats
    data = figures.waterfall_data(tables.breakdown)
    fig = figure(place, "components", data, figures.waterfall,
                 f"{run.model} · n={run.seq_len:,} · TTFT p50 {ms(stats['p50_ms'])} ms")
    out = [figure_block(place, "Waterfall: TTFT by component", fig, frame_table(data),
                        "Components in forward order, each starting where the previous ends: the last bar ends "
                        "at the measured TTFT.")]
    out += _roofline(tables, place)
    layers = figures.heatmap_data(tables.layers)
    if layers.shape[1] > 0:
        fig = figure(place, "layers", layers, figures.heatmap, "ms per component and layer", index=True)
        out.append(figure_block(place, "Per-layer heatmap", fig, frame_table(layers, index=True),
                                "ms per component (rows) and layer (columns): a layer that costs more than its "
                                "neighbours is a brighter cell."))
    out += telemetry_section(run, place)
    if tables.extrapolation is not None:
        out.append(f"<h2>Full-model estimate ({run.layers_built} of {run.layers_total} layers measured)</h2>")
        out.append(note("Per-layer components scaled by L/K, the rest unchanged: an estimate, not a measurement."))
        out.append(frame_table(tables.extrapolation))
    return out


def _roofline(tables: RunTables, place: Place) -> list[str]:
    roof, run = tables.roofline, tables.run
    if roof is None:
        return ["<h2>Roofline</h2>", note(tables.roofline_note or "no roofline for this run")]
    ceilings, _note = effective_ceilings(run)  # the roofs the table used, clock-scaled where measured
    peak = ceilings.peak_flops(run.dtype) or max(ceilings.flops_per_s.values())
    data = figures.roofline_data(roof)
    fig = figure(place, "roofline", data, figures.roofline_chart, peak, ceilings.bytes_per_s,
                 f"roofline · {ceilings.source}")
    shown = roof[["component", "flops", "bytes", "intensity", "bound", "floor_ms", "measured_ms", "efficiency",
                  "headroom_ms"]].astype({"efficiency": object})
    # above 1 the ceiling is wrong, not the kernel fast: never a plain number (the note says which ceiling)
    shown.loc[roof["efficiency"] > 1, "efficiency"] = "> 100%!"
    return [figure_block(place, "Roofline", fig, frame_table(shown),
                         "Each component at its arithmetic intensity and achieved useful FLOP/s, under the device's "
                         "roofs; the labels (right) give its efficiency, floor / measured.")]
