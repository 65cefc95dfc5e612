"""The report's figures, each drawn from one DataFrame that is also saved as CSV beside it.

Keeping a figure's data as a table (and the same table in the HTML) is what
lets a reader, or a test, check that the picture shows the numbers.
matplotlib is imported here only, and only when a report is made.
"""
from __future__ import annotations

import math

import pandas as pd

from analyzers.vocabulary import COLOURS, COMPONENTS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colour(component: str) -> str:
    return f"#{COLOURS.get(component, 0x607D8B):06x}" if component != "host_gap" else "#E0E0E0"


def waterfall_data(breakdown: pd.DataFrame) -> pd.DataFrame:
    """Components in forward order with where each bar starts: they end at the TTFT."""
    rows = breakdown[breakdown["present"] & (breakdown["ms"] > 0)][["component", "ms"]].copy()
    rows["start_ms"] = rows["ms"].cumsum() - rows["ms"]
    return rows.reset_index(drop=True)


def waterfall(data: pd.DataFrame, path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(data) + 1.8))
    labels = list(data["component"])[::-1]
    ax.barh(labels, data["ms"][::-1], left=data["start_ms"][::-1], color=[_colour(c) for c in labels],
            edgecolor="#424242", linewidth=0.5)
    total = float(data["ms"].sum())
    for y, (ms, start) in enumerate(zip(data["ms"][::-1], data["start_ms"][::-1], strict=True)):
        ax.text(start + ms + total * 0.005, y, f"{ms:,.3g} ms", va="center", fontsize=8,
                bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    ax.axvline(total, color="#212121", linestyle="--", linewidth=1)
    ax.set_xlabel(f"ms (TTFT {total:,.2f} ms, rows in forward order)")
    ax.set_xlim(0, total * 1.18)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def roofline_data(roof: pd.DataFrame) -> pd.DataFrame:
    """Points: arithmetic intensity against achieved FLOP/s (useful FLOPs over measured time)."""
    data = roof[(roof["measured_ms"] > 0) & (roof["flops"] > 0)].copy()
    data["achieved_flops_per_s"] = data["flops"] / (data["measured_ms"] / 1e3)
    return data[["component", "intensity", "achieved_flops_per_s", "efficiency", "bound"]].reset_index(drop=True)


def spread_labels(wanted: list[float], gap: float, lo: float = 0.0, hi: float = 1.0) -> list[float]:
    """Heights for labels, each as near its point's height as it can be, at least `gap` apart inside [lo, hi].

    adjustText is not a dependency: labels stacked in a column beside the axes, each joined to
    its point by a leader line, cannot overlap whatever the points do.
    """
    if not wanted:
        return []
    gap = min(gap, (hi - lo) / max(len(wanted) - 1, 1))
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    placed = list(wanted)
    floor = lo - gap
    for i in order:  # upwards: no label closer than gap to the one below
        floor = placed[i] = max(min(max(wanted[i], lo), hi), floor + gap)
    ceiling = hi + gap
    for i in reversed(order):  # downwards: back under the top where the column overflowed
        ceiling = placed[i] = min(placed[i], ceiling - gap)
    return placed


def roofline_chart(data: pd.DataFrame, path, peak: float, bandwidth: float, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    ridge = peak / bandwidth
    lo = max(min(data["intensity"].min(), ridge) / 10, 1e-2) if len(data) else 1e-2
    hi = max(data["intensity"].max() * 10 if len(data) else 1e4, ridge * 10)
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [min(peak, bandwidth * x) for x in xs], color="#212121", linewidth=1.5)
    ax.axvline(ridge, color="#9E9E9E", linestyle=":", linewidth=1)
    bottom = min([bandwidth * lo] + list(data["achieved_flops_per_s"])) / 3
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(bottom, peak * 3)
    span = math.log(peak * 3) - math.log(bottom)
    wanted = [(math.log(y) - math.log(bottom)) / span for y in data["achieved_flops_per_s"]]
    for row, at in zip(data.itertuples(index=False), spread_labels(wanted, 0.055), strict=True):
        ax.scatter(row.intensity, row.achieved_flops_per_s, color=_colour(row.component), edgecolor="#212121",
                   zorder=3, s=45)
        label = ">100%! (wrong ceiling)" if row.efficiency > 1 else f"{100 * row.efficiency:.2g}% of its roof"
        ax.annotate(f"{row.component}: {label}", (row.intensity, row.achieved_flops_per_s), xytext=(1.02, at),
                    textcoords="axes fraction", va="center", fontsize=8, annotation_clip=False,
                    bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": _colour(row.component)},
                    arrowprops={"arrowstyle": "-", "color": "#9E9E9E", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 4})
    ax.set_xlabel("arithmetic intensity (useful FLOP per byte of the floor)")
    ax.set_ylabel("achieved FLOP/s (useful FLOPs / measured time)")
    ax.set_title(f"{title}\nroofs: {peak / 1e12:,.3g} TFLOP/s peak, {bandwidth / 1e9:,.4g} GB/s; "
                 f"ridge at {ridge:,.3g} FLOP/B (dotted)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def heatmap_data(layers: pd.DataFrame) -> pd.DataFrame:
    """ms per component (rows) and layer (columns), from breakdown_layers; rows without a layer left out."""
    data = layers.dropna(subset=["layer"])
    wide = data.pivot_table(index="component", columns="layer", values="ms", aggfunc="sum", fill_value=0.0)
    order = [c for c in COMPONENTS if c in wide.index]
    return wide.loc[order]


def heatmap(wide: pd.DataFrame, path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * wide.shape[1] + 3), 0.42 * wide.shape[0] + 1.8))
    image = ax.imshow(wide.values, aspect="auto", cmap="viridis")
    ax.set_yticks(range(wide.shape[0]), labels=list(wide.index))
    ax.set_xticks(range(wide.shape[1]), labels=[str(int(c)) for c in wide.columns])
    ax.set_xlabel("layer")
    if wide.shape[1] <= 16:  # a value per cell while the cells are wide enough to hold one
        top = float(wide.values.max()) or 1.0
        for (i, j), value in pd.DataFrame(wide.values).stack().items():
            ax.text(j, i, f"{value:,.3g}", ha="center", va="center", fontsize=7,
                    color="#212121" if value > 0.6 * top else "#FFFFFF")
    fig.colorbar(image, ax=ax, label="ms")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fit_curve(fit: dict, xs: list[float]) -> list[float]:
    """A sweep.json fit drawn as it was made: ms = c0 + c1·n + c2·n² (c2 is 0 for a linear fit)."""
    return [fit["c0"] + fit["c1"] * x + fit["c2"] * x * x for x in xs]


def scaling_chart(table: pd.DataFrame, path, fits: list[dict], crossover: float | None, title: str) -> None:
    """Measured ms against length per component, each fit of sweep.json drawn through its points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    lengths = sorted(table["seq_len"].unique())
    right = max(lengths[-1], crossover * 1.1 if crossover and crossover < 4 * lengths[-1] else 0)
    xs = [lengths[0] + (right - lengths[0]) * i / 200 for i in range(201)]
    by_name = {f["component"]: f for f in fits}
    for component in [c for c in COMPONENTS if c in set(table["component"])]:
        rows = table[table["component"] == component]
        if rows["ms"].max() <= 0 or component in ("other", "host_gap", "h2d", "d2h"):
            continue
        ax.scatter(rows["seq_len"], rows["ms"], color=_colour(component), edgecolor="#212121", s=30, zorder=3)
        fit = by_name.get(component)
        if fit is not None:
            ax.plot(xs, _fit_curve(fit, xs), color=_colour(component), linewidth=1.3,
                    label=f"{component} ({'n²' if fit['fit'] == 'quadratic' else 'n'} fit, R² {fit['r2']:.3f})")
    if crossover and crossover <= right:
        ax.axvline(crossover, color="#D32F2F", linestyle="--", linewidth=1,
                   label=f"attention > mlp from ~{crossover:,.0f} tokens")
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("ms")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="fit quality", title_fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def stacked_data(table: pd.DataFrame) -> pd.DataFrame:
    """Wide table: ms per component (columns, forward order) for each length (rows)."""
    rows = table[table["component"] != "ttft"]
    wide = rows.pivot_table(index="seq_len", columns="component", values="ms", aggfunc="sum", fill_value=0.0)
    return wide[[c for c in COMPONENTS if c in wide.columns]]


def stacked_bars(wide: pd.DataFrame, path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    bottom = [0.0] * len(wide)
    labels = [f"{int(n):,}" for n in wide.index]
    for component in wide.columns:
        values = list(wide[component])
        if not any(v > 0 and not math.isnan(v) for v in values):
            continue
        ax.bar(labels, values, bottom=bottom, color=_colour(component), label=component, edgecolor="#424242",
               linewidth=0.4)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("ms (TTFT, by component)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


PHASE_COLOURS = {"h2d": "#BDBDBD", "forward": "#90CAF9", "sampling": "#FFAB91", "d2h": "#757575"}


def telemetry_chart(data: pd.DataFrame, path, phases: pd.DataFrame, title: str) -> None:
    """One panel per metric against time, the traced prefill's phases shaded across all of them."""
    from matplotlib.patches import Patch

    plt = _plt()
    labels = list(dict.fromkeys(data["label"]))
    fig, axes = plt.subplots(len(labels), 1, sharex=True, figsize=(9, 1.4 * len(labels) + 1.0), squeeze=False)
    for ax, label in zip(axes[:, 0], labels, strict=True):
        rows = data[data["label"] == label]
        ax.plot(rows["t_ms"], rows["value"], color="#37474F", linewidth=1, marker=".", markersize=3)
        for phase in phases.itertuples(index=False):
            ax.axvspan(phase.start_ms, phase.end_ms, color=PHASE_COLOURS.get(phase.phase, "#E0E0E0"), alpha=0.45,
                       linewidth=0)
            ax.axvline(phase.start_ms, color="#9E9E9E", linewidth=0.4)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_title(title, fontsize=10)
    axes[-1, 0].set_xlabel("ms since the first sample")
    if len(phases):
        handles = [Patch(color=PHASE_COLOURS.get(p.phase, "#E0E0E0"), alpha=0.6, label=f"{p.phase} ({p.ms:,.3g} ms)")
                   for p in phases.itertuples(index=False)]
        axes[0, 0].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                          title="traced prefill", title_fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
