"""Per-component roofline: how far each measured component is from its floor.

floor = max(useful FLOPs / peak FLOP/s, bytes floor / bandwidth); a floor is
a lower bound on time, so an efficiency (floor / measured) above 1 means a
wrong floor or a wrong ceiling, never a fast kernel.
"""
from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from analyzers.cost.ceilings import Ceilings
from analyzers.errors import InputError
from analyzers.vocabulary import dtype_bytes

ROOFLINE_COLUMNS = ["component", "flops", "flops_executed", "bytes", "intensity", "compute_floor_ms",
                    "memory_floor_ms", "floor_ms", "bound", "measured_ms", "efficiency", "headroom_ms"]


class RooflineError(InputError):
    """A roofline that cannot be drawn: a ceiling without a peak for the dtype, say."""


def roofline(costs: pd.DataFrame, ceilings: Ceilings, dtype: str,
             measured_ms: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per component of `costs` (analyzers.cost.flops.component_costs), floors from `ceilings`."""
    peak = ceilings.peak_flops(dtype)
    if not peak:
        have = ", ".join(sorted(ceilings.flops_per_s)) or "none"
        raise RooflineError(f"{ceilings.source} has no peak for {dtype} (it has {have}); "
                            "pick another --dtype, or run `ttft-profile calibrate` on this device.")
    bandwidth = ceilings.bytes_per_s
    rows = []
    for cost in costs.itertuples(index=False):
        compute_ms = cost.flops / peak * 1e3
        memory_ms = cost.bytes / bandwidth * 1e3
        floor_ms = max(compute_ms, memory_ms)
        measured = None if measured_ms is None else measured_ms.get(cost.component)
        rows.append({
            "component": cost.component,
            "flops": float(cost.flops),
            "flops_executed": float(cost.flops_executed),
            "bytes": float(cost.bytes),
            # a component with no bytes (absent, e.g. qk_norm in Llama) has no intensity
            "intensity": cost.flops / cost.bytes if cost.bytes else math.nan,
            "compute_floor_ms": compute_ms,
            "memory_floor_ms": memory_ms,
            "floor_ms": floor_ms,
            "bound": "" if floor_ms == 0 else "compute" if compute_ms >= memory_ms else "memory",
            "measured_ms": math.nan if measured is None else float(measured),
            "efficiency": floor_ms / measured if measured else math.nan,
            "headroom_ms": measured - floor_ms if measured is not None else math.nan,
        })
    return pd.DataFrame(rows, columns=ROOFLINE_COLUMNS)


def run_costs(run) -> pd.DataFrame:
    """FLOPs and bytes of what this run computed: its layers, length, batch, dtype and logits."""
    from analyzers.cost.flops import component_costs
    from analyzers.cost.model_spec import ModelSpec

    spec = ModelSpec.from_config(run.config)
    if run.tp > 1:  # one rank's shard: its split heads and widths (its collectives have no FLOPs)
        from analyzers.cost.tp import rank_spec

        spec = rank_spec(spec, run.tp)
    return component_costs(spec, run.seq_len, batch=run.batch, dtype_bytes=dtype_bytes(run.dtype),
                           attn=run.attn, logits=run.logits_kept, layers=run.layers_built or None, chunk=run.chunk)


def measured_clock(run) -> tuple[float | None, list[str]]:
    """Mean SM clock (MHz) during the forward phase, and the throttle reasons seen then."""
    rows = (run.telemetry or {}).get("attributed", [])
    clock, reasons = None, []
    for row in rows:
        if row["group"] != "phase" or row["name"] != "forward" or row["value"] != row["value"]:
            continue
        if row["metric"] == "sm_clock_mhz":
            clock = float(row["value"])
        elif row["metric"] == "clock_event_reasons":
            from analyzers.telemetry.samples import throttle_reason_names

            reasons = [r for r in throttle_reason_names(int(row["value"])) if r != "GpuIdle"]
    return clock, reasons


def effective_ceilings(run) -> tuple[Ceilings, str | None]:
    """A datasheet's compute peak assumes its boost clock; a slower measured clock scales it down."""
    ceilings = Ceilings.from_dict(run.ceilings)
    boost = ceilings.details.get("boost_clock_mhz")
    clock, reasons = measured_clock(run)
    if not boost or clock is None or clock >= 0.99 * boost:
        return ceilings, None
    scale = clock / boost
    scaled = Ceilings(ceilings.device_name, {k: v * scale for k, v in ceilings.flops_per_s.items()},
                      ceilings.bytes_per_s, ceilings.source, {**ceilings.details, "clock_scale": scale})
    why = ", ".join(reasons) if reasons else "no throttle reason reported"
    return scaled, (f"compute peak scaled to the measured SM clock, {clock:,.0f} of {boost:,.0f} MHz "
                    f"({100 * scale:.0f}%; {why})")


def efficiency_warnings(table: pd.DataFrame, ceilings: Ceilings, dtype: str) -> list[str]:
    """A line per ceiling (compute, memory) that components beat: an efficiency above 1 is a wrong ceiling.

    A floor is a lower bound, so a measured time under it convicts the ceiling (or the FLOP and
    byte count), never the kernel; the line names the ceiling, its value and source, and the fix.
    """
    over = table[table["efficiency"] > 1]
    lines = []
    for bound in ("compute", "memory"):
        rows = over[over["bound"] == bound].sort_values("efficiency", ascending=False)
        if rows.empty:
            continue
        who = ", ".join(f"{r.component} {r.efficiency:.2f}" for r in rows.itertuples())
        if bound == "compute":
            rate = f"{ceilings.peak_flops(dtype) / 1e12:.3g} TFLOP/s {dtype}"
            hint = "run `ttft-profile calibrate` on a quiet machine"
        else:
            rate = f"{ceilings.bytes_per_s / 1e9:.3g} GB/s"
            hint = ("a DRAM bandwidth bounds only traffic that does not fit in cache, so these bytes may have "
                    "stayed in cache; otherwise run `ttft-profile calibrate` on a quiet machine")
        lines.append(f"warning: eff {rows['efficiency'].iloc[0]:.2f} > 1 ({who}): the {bound} ceiling "
                     f"'{ceilings.source}' ({rate}) is below what this run achieved, so it is wrong here; {hint}")
    return lines


def matmul_dtype(run, ceilings: Ceilings) -> tuple[str, str | None]:
    """The dtype whose peak a run's matmuls can reach: a float32 run whose GPU matmuls run as TF32
    (run.precision, recorded at capture) is held to the TF32 peak, not the slower IEEE fp32 one."""
    tf32 = (run.dtype == "float32" and run.device.startswith("cuda")
            and (run.precision or {}).get("float32_matmul") == "tf32" and ceilings.peak_flops("tf32"))
    if not tf32:
        return run.dtype, None
    return "tf32", "compute peak: TF32, as this float32 run's matmuls ran in TF32 (run.json precision)"


def run_roofline(run, breakdown: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """The roofline of a run that recorded ceilings, against its breakdown's measured ms, with
    `efficiency_warning` set where a component beat its floor; and the lines saying how the
    ceilings were adjusted, if they were, and which ceiling is wrong, if one is."""
    measured = breakdown.set_index("component")["ms"].to_dict()
    ceilings, note = effective_ceilings(run)
    peak_dtype, tf32_note = matmul_dtype(run, ceilings)
    table = roofline(run_costs(run), ceilings, peak_dtype, measured)
    table["efficiency_warning"] = table["efficiency"] > 1  # NaN (nothing measured) compares False
    lines = [n for n in (note, tf32_note) if n] + efficiency_warnings(table, ceilings, peak_dtype)
    return table, "\n".join(lines) or None


def ttft_floor_ms(table: pd.DataFrame) -> float:
    """Components run one after another, so the TTFT floor is the sum of their floors."""
    return float(table["floor_ms"].sum())


def physical_floor(flops: float, bytes_: float, ceilings: Ceilings, dtype: str) -> dict:
    """The physical limit of a whole prefill: max(useful FLOPs / peak, minimum bytes / bandwidth).

    `ttft_floor_ms` sums per-component floors, each charged its own traffic (a norm reads and
    writes its activations): the work the model as written must do, unfused. An engine that fuses
    norms, residual adds and RoPE into the matmuls beats that sum, never this: `bytes_` is
    `analyzers.cost.flops.minimum_bytes` (weights once, KV cache once, token ids), and compute and
    memory may overlap, so the larger of the two bounds the time.
    """
    peak = ceilings.peak_flops(dtype)
    if not peak:
        raise RooflineError(f"{ceilings.source} has no peak for {dtype}; pick another --dtype.")
    compute_ms, memory_ms = flops / peak * 1e3, bytes_ / ceilings.bytes_per_s * 1e3
    floor = max(compute_ms, memory_ms)
    return {"floor_ms": floor, "flops": float(flops), "bytes": float(bytes_), "compute_ms": compute_ms,
            "memory_ms": memory_ms, "bound": "" if floor == 0 else "compute" if compute_ms >= memory_ms else "memory"}


def run_physical_floor(run) -> dict:
    """`physical_floor` of what this run computed (its layers, length, batch, dtype), on its effective ceilings."""
    from analyzers.cost.flops import minimum_bytes
    from analyzers.cost.model_spec import ModelSpec

    spec = ModelSpec.from_config(run.config)
    moved = minimum_bytes(spec, run.seq_len, batch=run.batch, dtype_bytes=dtype_bytes(run.dtype),
                          layers=run.layers_built or None)
    ceilings, _note = effective_ceilings(run)
    return physical_floor(float(run_costs(run)["flops"].sum()), float(moved.total), ceilings, run.dtype)
