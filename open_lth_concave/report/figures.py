"""Figures drawn from what finished runs already hold, next to `comparison.png` (and by `summary --figures`).

- `learning_curves.png`: test accuracy against the training step of every level's ticket (level 0 is
  the dense network, drawn black), one panel per entry, mean over the replicates evaluated at a step.
- `mask_histograms.png`: per concave search level (one row per mask-search entry, one panel per
  level), the distribution of the relaxed mask values over the weights that survived the level before,
  as the search ended (its `search/strategy_final.pth`; else `relaxed_mask.pth`, where the pruned masks
  are already 0; else the 20-bin histogram of `search_metrics.json`), count axis
  logarithmic, with alpha (the threshold in force) marked: everything left of it was pruned.
- `layer_remaining.png`: remaining weights per prunable tensor at each level (replicate 1's masks),
  one panel per entry, logarithmic axis.

Each figure is written only when there is something to draw; a damaged or missing file leaves out its
curve or panel, never an error.
"""
from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Optional

from open_lth_concave.foundations import layout
from open_lth_concave.foundations.io import save_bytes
from open_lth_concave.report import names

FIGURES = layout.FIGURES


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    plt = _plt()
    buffer = BytesIO()
    try:
        fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.15)   # every title inside the image
    finally:
        plt.close(fig)
    save_bytes(buffer.getvalue(), path)


def _levels(exp) -> list[int]:
    return sorted({r["level"] for rows in exp.replicates.values() for r in rows})


def _level_colors(levels: list[int]):
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    top = max(max(levels), 1)
    return {lv: ("black" if lv == 0 else cmap(0.15 + 0.75 * (lv - 1) / max(top - 1, 1))) for lv in levels}


def _plain_log_labels(ax, lo: float, hi: float) -> None:
    """Percentages on a log axis at round values as plain numbers (70, 80, 100), not 7x10^1."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    from open_lth_concave.report.plot import nice_ticks
    ax.yaxis.set_major_locator(FixedLocator(nice_ticks(lo, hi)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))


def _panels(n: int, width: float = 4.2, height: float = 3.3, sharey: bool = False):
    plt = _plt()
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), dpi=120, squeeze=False, sharey=sharey)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


# ---- learning curves -----------------------------------------------------------------------------------
def learning_curve(exp, level: int) -> Optional[tuple[list[int], list[float]]]:
    """(iterations, mean test accuracy in %) of one level over the replicates that logged each iteration."""
    from open_lth_concave.training.metric_logger import MetricLogger
    by_step: dict[int, list[float]] = {}
    for rep in exp.replicates:
        logger = layout.main_dir(layout.replicate_dir(exp.path, rep), level) / layout.LOGGER
        try:
            points = MetricLogger.load(logger).get("test_accuracy")
        except Exception:   # noqa: BLE001 - missing (not trained) or damaged: left out
            continue
        for it, value in points:
            by_step.setdefault(int(it), []).append(100 * float(value))
    if not by_step:
        return None
    steps = sorted(by_step)
    return steps, [sum(by_step[s]) / len(by_step[s]) for s in steps]


def curve_limits(accuracies: list[list[float]], steps: list[list[int]]) -> tuple[float, float]:
    """The accuracy axis of learning curves: the range the curves cover after their first tenth (the start
    at chance would squeeze the differences that matter into a sliver), with margins, inside [0, 100]."""
    last = max((s[-1] for s in steps if s), default=0)
    late = [a for acc, s in zip(accuracies, steps) for a, it in zip(acc, s) if it >= 0.1 * last] or \
        [a for acc in accuracies for a in acc]
    lo, hi = min(late), max(late)
    margin = max(0.5, 0.08 * (hi - lo))
    return max(0.0, lo - margin), min(100.0, hi + margin)


def plot_learning_curves(experiments, labels: list[str], path: Path) -> bool:
    curves = [(exp, label, {lv: learning_curve(exp, lv) for lv in _levels(exp)}) for exp, label in zip(experiments, labels)]
    curves = [(e, lab, {lv: c for lv, c in cs.items() if c}) for e, lab, cs in curves]
    curves = [c for c in curves if c[2]]
    if not curves:
        return False
    fig, axes = _panels(len(curves))
    for ax, (exp, label, by_level) in zip(axes, curves):
        colors = _level_colors(list(by_level))
        for level, (steps, acc) in sorted(by_level.items()):
            shares = [100 * r["remaining"] for rows in exp.replicates.values() for r in rows if r["level"] == level]
            remaining = sum(shares) / len(shares) if shares else None    # the mean over the replicates drawn
            name = "dense" if level == 0 else f"level {level}"
            ax.plot(steps, acc, color=colors[level], linewidth=2.2 if level == 0 else 1.4,
                    marker="o" if len(steps) <= 12 else None, markersize=3,
                    label=f"{name} ({remaining:.3g}%)" if remaining is not None else name)
        ax.set_title(f"{names.strategy_name(label)} (n={len(exp.replicates)})", fontsize=9)
        ax.set_ylim(*curve_limits([acc for steps, acc in by_level.values()], [steps for steps, _ in by_level.values()]))
        ax.set_xlabel("training step (iterations)", fontsize=8)
        ax.set_ylabel("test accuracy (%)", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, title="ticket (remaining)", title_fontsize=7)
    fig.suptitle("Learning curves per level: tickets against the dense network", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    return True


# ---- mask histograms -----------------------------------------------------------------------------------
def search_histogram(level_dir: Path, previous_mask: Optional[Path], bins: int = 100
                     ) -> Optional[tuple[list[float], list[int], Optional[float], Optional[float]]]:
    """(bin edges, counts, alpha, cut) of a search level's relaxed masks over the surviving weights; `cut`
    is the value up to which the level pruned (`pruned_below`: alpha, or lower when it pruned by count)."""
    from open_lth_concave.foundations import io
    metrics_name, relaxed_name = layout.plugin_file("search_metrics"), layout.plugin_file("relaxed_mask")
    if metrics_name is None or relaxed_name is None:   # no loaded plug-in keeps a relaxed-mask search
        return None
    metrics_file = level_dir / layout.PRUNING / metrics_name
    try:
        metrics = io.load_json(metrics_file)
    except Exception:   # noqa: BLE001 - no search at this level (or a damaged record)
        return None
    alpha = metrics.get("threshold")
    try:
        import torch

        from open_lth_concave.pruning.mask import Mask
        final = level_dir / layout.PRUNING / layout.SEARCH / layout.STRATEGY_FINAL   # the masks as the search ended
        state = io.load_torch(final) if final.exists() else {}
        relaxed = state.get("relaxed_mask") if isinstance(state, dict) else None
        if not isinstance(relaxed, dict):   # else after pruning: the masks below alpha are 0 there
            relaxed = io.load_torch(level_dir / layout.PRUNING / relaxed_name)
        before = Mask.load(previous_mask) if previous_mask is not None and previous_mask.exists() else None
        ignored = set(metrics.get("ignored_layers") or [])
        values = torch.cat([v[before[n] == 1].flatten() if before is not None and n in before else v.flatten()
                            for n, v in relaxed.items() if n not in ignored]).float()
        counts = torch.histc(values, bins=bins, min=0.0, max=1.0)
        return ([i / bins for i in range(bins + 1)], [int(c) for c in counts.tolist()], alpha,
                pruned_below(metrics, values, alpha))
    except Exception:   # noqa: BLE001 - fall back on the recorded histogram
        hist = metrics.get("mask_histogram") or {}
        if not hist.get("edges") or not hist.get("counts"):
            return None
        return list(hist["edges"]), [int(c) for c in hist["counts"]], alpha, alpha


def pruned_below(metrics: dict, values, alpha: Optional[float]) -> Optional[float]:
    """Where a level's pruned masks end: alpha when the masks below it were pruned, else (a fixed count by
    mask value: the fraction mode, or a target that was capped, topped up or fell back) the largest pruned
    value, so that a figure marks what was pruned, not merely what fell below alpha."""
    by_count = metrics.get("pruning_mode") == "fraction" or (
        metrics.get("pruning_mode") == "target" and metrics.get("target_outcome") not in (None, "own choice"))
    removed = metrics.get("removed")
    if not by_count or not isinstance(removed, int) or removed <= 0 or removed > values.numel():
        return alpha
    import torch
    return float(torch.sort(values).values[removed - 1])


def plot_mask_histograms(experiments, labels: list[str], path: Path) -> bool:
    rows = []
    for exp, label in zip(experiments, labels):
        if not exp.replicates:
            continue
        rep = layout.replicate_dir(exp.path, min(exp.replicates))
        panels = [(lv, search_histogram(layout.level_dir(rep, lv), layout.main_dir(rep, lv - 1) / layout.MASK))
                  for lv in _levels(exp) if lv > 0]
        panels = [(lv, h) for lv, h in panels if h is not None]
        if panels:
            rows.append((exp, label, panels, min(exp.replicates)))
    if not rows:
        return False
    plt = _plt()
    cols = max(len(p) for _, _, p, _ in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.6 * cols, 2.9 * len(rows)), dpi=120, squeeze=False)
    for r, (exp, label, panels, rep) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(panels):
                ax.set_visible(False)
                continue
            level, (edges, counts, alpha, cut) = panels[c]
            widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
            below = [a <= cut for a in edges[:-1]] if cut is not None else [False] * len(counts)
            ax.bar(edges[:-1], [max(x, 0) for x in counts], width=widths, align="edge",
                   color=["#d62728" if b else "#1f77b4" for b in below], linewidth=0)
            ax.set_yscale("log")
            ax.set_xlim(0, 1)
            if alpha is not None:
                ax.axvline(alpha, color="black", linestyle="--", linewidth=1.2)
                total = sum(counts)
                under = sum(x for x, a in zip(counts, edges[:-1]) if a < alpha)
                note = f" α = {alpha:g}\n {100 * under / max(total, 1):.1f}% below α"
                if cut is not None and cut != alpha:   # pruned by count: mark where the pruned masks end
                    ax.axvline(cut, color="#d62728", linestyle=":", linewidth=1.2)
                    note += f"\n {100 * sum(x for x, b in zip(counts, below) if b) / max(total, 1):.1f}% pruned (lowest)"
                ax.text(alpha, 0.97, note, transform=ax.get_xaxis_transform(), va="top", fontsize=7)
            ax.set_title(f"{names.strategy_name(label)}: level {level} (replicate {rep})", fontsize=8)
            ax.set_xlabel("relaxed mask value", fontsize=7)
            ax.set_ylabel("weights (log)", fontsize=7)
            ax.tick_params(labelsize=7)
    fig.suptitle("Mask values at the end of each concave search, over the weights that survived the level before "
                 "(red: pruned; dashed: α)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


# ---- remaining weights per layer -----------------------------------------------------------------------
def layer_remaining(exp) -> dict[int, dict[str, float]]:
    """level -> tensor -> remaining weights in %, from the first replicate's masks."""
    from open_lth_concave.pruning.mask import Mask
    if not exp.replicates:
        return {}
    rep = layout.replicate_dir(exp.path, min(exp.replicates))
    out = {}
    for level in _levels(exp):
        try:
            mask = Mask.load(layout.main_dir(rep, level) / layout.MASK)
        except Exception:   # noqa: BLE001 - left out
            continue
        out[level] = {n: 100 * float(v.float().mean()) for n, v in mask.items()}
    return out


def ignored_tensors(exp) -> set[str]:
    """The tensors the experiment's pruning leaves alone (its --pruning_layers_to_ignore)."""
    value = (getattr(exp, "hparams", None) or {}).get("pruning_hparams", {}).get("pruning_layers_to_ignore")
    return {t.strip() for t in value.split(",") if t.strip()} if isinstance(value, str) else set()


def plot_layer_remaining(experiments, labels: list[str], path: Path) -> bool:
    data = [(exp, label, layer_remaining(exp)) for exp, label in zip(experiments, labels)]
    data = [d for d in data if d[2]]
    if not data:
        return False
    fig, axes = _panels(len(data), width=4.6, height=3.5, sharey=True)
    for ax, (exp, label, by_level) in zip(axes, data):
        colors = _level_colors(list(by_level))
        tensors = list(next(iter(by_level.values())))
        xs = list(range(len(tensors)))
        for level, per in sorted(by_level.items()):
            ax.plot(xs, [max(per.get(t, 0.0), 1e-3) for t in tensors], color=colors[level], marker="o", markersize=3,
                    linewidth=1.3, label="dense" if level == 0 else f"level {level}")
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ignored = ignored_tensors(exp)   # drawn at 100% by design: say so on the axis
        ax.set_xticklabels([t.replace(".weight", "") + (" (never pruned)" if t in ignored else "") for t in tensors],
                           rotation=60, ha="right", fontsize=6)
        ax.set_title(f"{names.strategy_name(label)} (replicate {min(exp.replicates)})", fontsize=9)
        ax.set_ylabel("remaining weights (%)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    values = [max(v, 1e-3) for _, _, by_level in data for per in by_level.values() for v in per.values()]
    _plain_log_labels(axes[0], min(values) / 1.05, max(values) * 1.05)   # the panels share the y axis
    fig.suptitle("Remaining weights per layer at each level", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    return True


def write_figures(experiments, labels: list[str], out_dir: Path) -> list[str]:
    """The figures above into out_dir; returns the file names written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in zip(FIGURES, (plot_learning_curves, plot_mask_histograms, plot_layer_remaining)):
        if draw(experiments, labels, out_dir / name):
            written.append(name)
    return written
