"""The comparison figure, drawn like the paper's Figs. 5-9: test accuracy against the percentage of
remaining weights on a logarithmic axis that decreases to the right, one line per strategy with a
shaded ±std band, and the dense accuracy as a dotted reference."""
from __future__ import annotations

from io import BytesIO
from pathlib import Path

from open_lth_concave.foundations.io import save_bytes
from open_lth_concave.report import names

COLORS = {"sparse_global": "#1f77b4", "concave_l1": "#d62728", "concave_log": "#2ca02c", "concave_lq": "#9467bd",
          "concave_mcp": "#8c564b", "sigmoid_mask": "#ff7f0e"}
EXTRA_COLORS = ["#17becf", "#e377c2", "#bcbd22", "#7f7f7f"]
MARKERS = {"sparse_global": "o", "concave_l1": "s", "concave_log": "^", "sigmoid_mask": "D"}


def _style(stats, used: set) -> dict:
    """The strategy's own color; the paper's dashed line for the hard (fixed-fraction) variant; a fresh
    color when the same strategy appears twice otherwise (e.g. two pruning fractions)."""
    strategy = stats.experiment.strategy
    hard = (stats.experiment.hparams.get("pruning_hparams") or {}).get("pruning_mode") == "fraction"
    linestyle = "--" if hard else "-"
    candidates = [COLORS[strategy]] if strategy in COLORS else []
    candidates += [c for c in EXTRA_COLORS + list(COLORS.values()) if c not in candidates]
    color = next((c for c in candidates if (c, linestyle) not in used), candidates[0])
    used.add((color, linestyle))
    return {"color": color, "linestyle": linestyle, "marker": MARKERS.get(strategy, "o")}


def nice_ticks(lo: float, hi: float, most: int = 9) -> list[float]:
    """Round percentages (100, 70, 50, 30, ...) for a log axis: the finest 1-2-5-like set with at most
    `most` ticks in [lo, hi], largest first."""
    import math
    for subs in ((1, 1.5, 2, 3, 4, 5, 6, 7, 8), (1, 2, 3, 5, 7), (1, 2, 5), (1, 3), (1,)):
        ticks = [s * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                 for s in subs]
        ticks = sorted({t for t in ticks if lo <= t <= hi}, reverse=True)
        if len(ticks) <= most:
            return ticks if len(ticks) >= 2 else sorted({lo, hi}, reverse=True)
    return [hi, lo]


def _tick_label(value: float) -> str:
    return f"{value:.3g}"


def plot_comparison(all_stats: list, heading: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=150)
    xs_all: list[float] = []
    used: set = set()
    dense_values = []
    for stats in all_stats:
        rows = [r for r in stats.levels if r["accuracy_mean_pct"] is not None]
        if not rows:
            continue
        x = [r["remaining_pct"] for r in rows]
        y = [r["accuracy_mean_pct"] for r in rows]
        s = [r["accuracy_std_pct"] or 0.0 for r in rows]
        style = _style(stats, used)
        n = max(len(stats.experiment.replicates), 1)
        ax.plot(x, y, label=f"{names.strategy_name(stats.label)} (n={n})", linewidth=2, markersize=6, **style)
        ax.fill_between(x, [a - b for a, b in zip(y, s)], [a + b for a, b in zip(y, s)],
                        color=style["color"], alpha=0.18, linewidth=0)
        xs_all += x
        if rows[0]["level"] == 0:
            dense_values.append(rows[0]["accuracy_mean_pct"])
    if dense_values:
        dense = sum(dense_values) / len(dense_values)
        ax.axhline(dense, color="0.35", linestyle=":", linewidth=1.2, label=f"Dense network ({dense:.2f}%)")
    ax.set_xscale("log")
    if xs_all:
        lo, hi = min(xs_all), max(xs_all)
        ax.set_xlim(hi * 1.08, lo / 1.08)  # decreasing to the right, as in the paper
        kept = nice_ticks(lo / 1.08, hi * 1.08)
        ax.xaxis.set_major_locator(FixedLocator(kept))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([_tick_label(t) for t in kept])
    ax.set_xlabel("Remaining weights (%)", fontsize=11)
    ax.set_ylabel("Test accuracy (%)", fontsize=11)
    ax.set_title(heading, fontsize=12)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)
    fig.tight_layout()
    buffer = BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    save_bytes(buffer.getvalue(), path)  # atomic: a failed or interrupted save leaves no file behind
