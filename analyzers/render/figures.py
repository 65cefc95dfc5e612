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
        ax.text(start + ms + total * 0.005, y, f"{ms:,.2f} ms", va="center", fontsize=8)
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


def roofline_chart(data: pd.DataFrame, path, peak: float, bandwidth: float, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    lo = max(min(data["intensity"].min(), peak / bandwidth) / 10, 1e-2) if len(data) else 1e-2
    hi = max(data["intensity"].max() * 10 if len(data) else 1e4, peak / bandwidth * 10)
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [min(peak, bandwidth * x) for x in xs], color="#212121", linewidth=1.5, label="roof")
    ax.axvline(peak / bandwidth, color="#9E9E9E", linestyle=":", linewidth=1)
    for row in data.itertuples(index=False):
        ax.scatter(row.intensity, row.achieved_flops_per_s, color=_colour(row.component), edgecolor="#212121",
                   zorder=3, s=45)
        label = ">100%! (wrong ceiling)" if row.efficiency > 1 else f"{100 * row.efficiency:.0f}%"
        ax.annotate(f"{row.component} {label}", (row.intensity, row.achieved_flops_per_s),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (useful FLOP per byte of the floor)")
    ax.set_ylabel("achieved FLOP/s (useful FLOPs / measured time)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    fig.colorbar(image, ax=ax, label="ms")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scaling_chart(table: pd.DataFrame, path, fits: dict, crossover: float | None, title: str) -> None:
    """Measured ms against length per component, with each fit drawn through its points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    lengths = sorted(table["seq_len"].unique())
    right = max(lengths[-1], crossover * 1.1 if crossover and crossover < 4 * lengths[-1] else 0)
    xs = [lengths[0] + (right - lengths[0]) * i / 200 for i in range(201)]
    for component in [c for c in COMPONENTS if c in set(table["component"])]:
        rows = table[table["component"] == component]
        if rows["ms"].max() <= 0 or component in ("other", "host_gap", "h2d", "d2h"):
            continue
        ax.scatter(rows["seq_len"], rows["ms"], color=_colour(component), edgecolor="#212121", s=30, zorder=3)
        fit = fits.get(component)
        if fit is not None:
            ax.plot(xs, [fit.predict(x)[0] for x in xs], color=_colour(component), linewidth=1.3,
                    label=f"{component} ({'n²' if fit.quadratic else 'n'} fit, R² {fit.r2:.3f})")
    if crossover and crossover <= right:
        ax.axvline(crossover, color="#D32F2F", linestyle="--", linewidth=1)
        ax.annotate(f"attention > mlp at ~{crossover:,.0f}", (crossover, ax.get_ylim()[1] * 0.9),
                    xytext=(4, 0), textcoords="offset points", fontsize=8, color="#D32F2F")
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("ms")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
