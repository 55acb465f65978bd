"""The comparison figure, drawn like the paper's Figs. 5-9: test accuracy against the percentage of
remaining weights on a logarithmic axis that decreases to the right, one line per strategy with a
shaded ±std band, and the dense accuracy as a dotted reference."""
from __future__ import annotations

from io import BytesIO
from pathlib import Path

from open_lth_concave.foundations.io import save_bytes
from open_lth_concave.report import names

# colours for entries whose strategy has none of its own, or whose own colour is taken (matplotlib's tab10)
PALETTE = ["#17becf", "#e377c2", "#bcbd22", "#7f7f7f", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#ff7f0e"]


def _style(stats, used: set) -> dict:
    """The strategy class's own colour, marker and line style (`PruningStrategy.color`, `.marker`,
    `.line_style_of(its recorded pruning hyperparameters)`, e.g. dashed for a hard variant); a fresh
    colour when the same strategy appears twice with the same line style (e.g. two pruning fractions)."""
    from open_lth_concave.pruning.strategy import PruningStrategy
    cls = names.strategy_class(stats.experiment.strategy) or PruningStrategy
    linestyle = cls.line_style_of(dict(stats.experiment.hparams.get("pruning_hparams") or {}))
    candidates = [cls.color] if cls.color else []
    candidates += [c for c in PALETTE if c not in candidates]
    color = next((c for c in candidates if (c, linestyle) not in used), candidates[0])
    used.add((color, linestyle))
    return {"color": color, "linestyle": linestyle, "marker": cls.marker}


def _pruning_defaults(strategy: str) -> tuple[dict, type]:
    """The strategy's own defaults (its hyperparameter dataclass) and its class (the core's base class for
    a strategy this installation does not know: no defaults, no symbols)."""
    from dataclasses import MISSING, fields
    from open_lth_concave.pruning.strategy import PruningStrategy
    strategy_cls = names.strategy_class(strategy)
    if strategy_cls is None:
        return {}, PruningStrategy
    return {f.name: f.default for f in fields(strategy_cls.hparams_cls) if f.default is not MISSING}, strategy_cls


def legend_labels(all_stats: list) -> list[str]:
    """Each entry's name plus every non-default setting that tells it apart from the others: its pruning
    settings that differ from its strategy's defaults (and are not the same for every entry), what its
    strategy always shows (`legend_values`, e.g. the alpha in force for mask searches), and any other
    hyperparameter that differs between entries; short names from the strategy's `legend_symbols`."""
    import json
    exps = [s.experiment for s in all_stats]
    pruning = [dict(e.hparams.get("pruning_hparams") or {}) for e in exps]
    shared = {k for k in set().union(*pruning) if all(k in p for p in pruning) and
              len({json.dumps(p[k], default=str) for p in pruning}) == 1} if pruning else set()
    flat = [{f"{g}.{k}": v for g, d in e.hparams.items() if isinstance(d, dict) and g != "pruning_hparams"
             for k, v in d.items()} for e in exps]
    differing = sorted(k for k in set().union(*flat) if len({json.dumps(f.get(k), default=str) for f in flat}) > 1) \
        if flat else []
    labels = []
    for stats, values, other in zip(all_stats, pruning, flat):
        strategy = stats.experiment.strategy
        defaults, cls = _pruning_defaults(strategy)
        always = cls.legend_values(values)

        def setting(key: str, value) -> str:
            symbol = cls.legend_symbols.get(key, key)
            return f"{symbol} {value:g}" if isinstance(value, float) else f"{symbol} {value}"
        shown = []
        for key, value in values.items():
            if key == "pruning_strategy" or key in always or key in shared or value is None:
                continue
            if key in defaults and value == defaults[key]:
                continue
            shown.append(setting(key, value))
        shown += [setting(key, value) for key, value in always.items()]
        shown += [f"{k.split('.', 1)[1]} {other.get(k)}" for k in differing]
        base = names.strategy_name(strategy)
        labels.append(f"{base} ({', '.join(shown)})" if shown else base)
    return labels


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


MIN_SPAN_IMAGES = 25


def accuracy_limits(values: list[float], test_images: int) -> tuple[float, float]:
    """The accuracy axis (in %): the data with 5% margins, widened to at least MIN_SPAN_IMAGES test images
    around their middle, so that a difference of one or two images stays a small step on the plot."""
    lo, hi = min(values), max(values)
    span = max(hi - lo, MIN_SPAN_IMAGES * 100.0 / test_images)
    middle = (hi + lo) / 2
    low, high = middle - 0.55 * span, middle + 0.55 * span
    if high > 100.0:            # an accuracy axis never runs past 100% (nor below 0): the window slides inside
        low, high = max(0.0, low - (high - 100.0)), 100.0
    if low < 0.0:
        low, high = 0.0, min(100.0, high - low)
    return low, high


def plot_comparison(all_stats: list, heading: str, path: Path, test_images: int | None = None) -> None:
    """`test_images`: the test-set size; the accuracy axis then spans at least 25 test images and says
    what one image is worth, so that a one- or two-image wiggle is not drawn as a cliff."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=150)
    xs_all: list[float] = []
    ys_all: list[float] = []
    used: set = set()
    dense_rows = [s.levels[0] for s in all_stats if s.levels and s.levels[0]["level"] == 0
                  and s.levels[0]["accuracy_mean_pct"] is not None]
    dense_once = len(dense_rows) > 1 and len({(round(r["accuracy_mean_pct"], 9), round(r["accuracy_std_pct"] or 0, 9))
                                              for r in dense_rows}) == 1
    labels = legend_labels(all_stats) if all_stats else []
    for stats, label in zip(all_stats, labels):
        rows = [r for r in stats.levels if r["accuracy_mean_pct"] is not None]
        if not rows:
            continue
        x = [r["remaining_pct"] for r in rows]
        y = [r["accuracy_mean_pct"] for r in rows]
        s = [r["accuracy_std_pct"] or 0.0 for r in rows]
        style = _style(stats, used)
        n = max(len(stats.experiment.replicates), 1)
        shared_start = dense_once and rows[0]["level"] == 0
        ax.plot(x, y, label=f"{label} (n={n})", linewidth=2, markersize=6,
                markevery=list(range(1, len(x))) if shared_start else None, **style)
        if n > 1:   # one replicate has no spread
            first = 1 if shared_start else 0
            ax.fill_between(x[first:], [a - b for a, b in zip(y, s)][first:], [a + b for a, b in zip(y, s)][first:],
                            color=style["color"], alpha=0.18, linewidth=0)
        xs_all += x
        ys_all += [a - b for a, b in zip(y, s)] + [a + b for a, b in zip(y, s)]
    if dense_rows:
        dense = sum(r["accuracy_mean_pct"] for r in dense_rows) / len(dense_rows)
        what = "Dense network, shared" if dense_once else "Dense network"
        ax.axhline(dense, color="0.35", linestyle=":", linewidth=1.2, label=f"{what} ({dense:.2f}%)")
        if dense_once:
            std = dense_rows[0]["accuracy_std_pct"] or 0.0
            ax.errorbar([dense_rows[0]["remaining_pct"]], [dense], yerr=[std] if std else None, color="black",
                        marker="*", markersize=11, capsize=3, linewidth=1.2, zorder=5)
    if test_images and ys_all:
        image = 100.0 / test_images
        ax.set_ylim(*accuracy_limits(ys_all, test_images))
        ax.set_ylabel(f"Test accuracy (%); 1 test image = {image:.2g} pp", fontsize=11)
    else:
        ax.set_ylabel("Test accuracy (%)", fontsize=11)
    ax.set_xscale("log")
    if xs_all:
        lo, hi = min(xs_all), max(xs_all)
        ax.set_xlim(hi * 1.08, lo / 1.08)  # decreasing to the right, as in the paper
        kept = nice_ticks(lo / 1.08, hi * 1.08)
        ax.xaxis.set_major_locator(FixedLocator(kept))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([_tick_label(t) for t in kept])
    ax.set_xlabel("Remaining weights (%)", fontsize=11)
    ax.set_title(heading, fontsize=10 if len(heading) > 70 else 12)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)
    fig.tight_layout()
    buffer = BytesIO()
    try:
        fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.15)   # every title inside the image
    finally:
        plt.close(fig)
    save_bytes(buffer.getvalue(), path)  # atomic: a failed or interrupted save leaves no file behind
