"""Terminal rendering of predictions (rich); numbers come from analyzers.cost.predict."""
from __future__ import annotations

from analyzers.cost.predict import Prediction
from analyzers.render.fmt import num


def render_prediction(prediction: Prediction, console) -> None:
    """The floor per component on a GPU the user may not have; an estimate when efficiencies are given."""
    from rich.markup import escape
    from rich.table import Table

    p, table, totals = prediction, prediction.table, prediction.totals
    ranks = f" x {totals['tp']} over {escape(totals['interconnect'])}, per rank" if "tp" in totals else ""
    chunks = (f" · chunked: {totals['chunks']} forwards of {totals['chunk']:,} tokens (weights and cached K/V re-read "
              "each)" if "chunk" in totals else "")
    console.print(f"[bold]{escape(p.model)}[/] · n={p.seq_len} b={p.batch} · {p.dtype} · {escape(p.gpu_name)}{ranks} "
                  f"(datasheet ceilings){chunks}")
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
    if "tp" in totals:
        for line in tp_lines(prediction):
            console.print(escape(line))
    if estimate:
        console.print(f"estimate with the given efficiencies: {num(totals['estimate_ms'])} ms")


def physical_line(totals: dict) -> str:
    """The whole prefill's physical limit, named apart from the per-component floor it sits under."""
    return (f"physical limit {num(totals['physical_floor_ms'])} ms, whole prefill fully fused (a lower bound for "
            f"any engine on these ceilings), {totals['physical_bound']}-bound: "
            f"{totals['physical_flops'] / 1e12:,.2f} TFLOP at peak {num(totals['physical_compute_ms'])} ms; "
            f"{totals['physical_bytes'] / 1e9:,.2f} GB (weights once, KV cache once, token ids) at bandwidth "
            f"{num(totals['physical_memory_ms'])} ms" + _wire(totals))


def _wire(totals: dict) -> str:
    """A tensor-parallel rank's limit has a third bound: the collectives' bytes on its link."""
    if "physical_communication_ms" not in totals:
        return ""
    return f"; collectives on the link {num(totals['physical_communication_ms'])} ms"


def tp_lines(prediction: Prediction) -> list[str]:
    """What the wire costs one rank, the floor for each K one node allows, and from which K the wire dominates."""
    from analyzers.cost.predict import communication_dominates_from

    totals, rows = prediction.totals, list(prediction.scaling)
    lines = [f"communication floor {num(totals['communication_floor_ms'])} ms "
             f"({100 * totals['communication_share']:.1f}% of the floor): {totals['communication_calls']} collectives, "
             f"{totals['communication_bytes'] / 1e9:,.2f} GB sent per rank on {totals['interconnect']} "
             f"({num(totals['link_bandwidth_gbs'])} GB/s per direction, {num(totals['link_latency_us'])} us per step); "
             f"compute and memory {num(totals['compute_memory_floor_ms'])} ms"]
    if not rows:
        return lines
    named = len({r["interconnect"] for r in rows if r["interconnect"]}) > 1  # e.g. a bridged pair, then PCIe
    steps = ", ".join(f"K={r['tp']} {num(r['floor_ms'])} ms ({100 * r['communication_share']:.0f}% wire"
                      + (f" on {r['interconnect']})" if named and r["interconnect"] else ")") for r in rows)
    lines.append(f"floor per rank by K: {steps}")
    first, last = communication_dominates_from(rows), rows[-1]["tp"]
    where = (f"communication dominates (exceeds all other components together) from K={first}" if first else
             f"communication does not dominate (exceed all other components together) up to K={last}")
    lines.append(f"{where} at n={prediction.seq_len}")
    return lines


def prediction_json(prediction: Prediction) -> dict:
    """What `predict --json` prints."""
    p = prediction
    out = {"model": p.model, "seq_len": p.seq_len, "batch": p.batch, "dtype": p.dtype, "gpu": p.gpu_key,
           "gpu_name": p.gpu_name, "totals": p.totals, "components": p.table.to_dict("records")}
    if p.scaling:
        from analyzers.cost.predict import communication_dominates_from

        out["tp_scaling"] = list(p.scaling)
        out["communication_dominates_from"] = communication_dominates_from(list(p.scaling))
    return out
