"""Figures 3 and 4 of the paper from the illustration's results (matplotlib, Agg: no display needed)."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from open_lth_concave.foundations.io import save_bytes  # noqa: E402  (PNG bytes, crash-safe)

LABELS = {
    "logreg": "LG (no regularisation)",
    "l1_subgradient": r"LG + $\ell_1$ on $\theta$ (subgradient)",
    "mask_l1": r"mask $\ell_1$ (projected gradient)",
    "mask_log": r"mask log, $\epsilon$=0.1 (projected gradient)",
    "sklearn_l1": r"sklearn liblinear $\ell_1$ (reference)",
}
STYLES = {"logreg": "k--", "l1_subgradient": "C3o-", "mask_l1": "C0s-", "mask_log": "C2^-", "sklearn_l1": "C7x:"}


def _save(fig: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    save_bytes(buffer.getvalue(), path)


def fig3(rows: list[dict], path: Path, source: str) -> None:
    """Mean validation accuracy and sparsity versus lambda (log x axis), shaded +-1 std over draws."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    lams = [r["lambda"] for r in rows if r["lambda"] is not None]
    lo, hi = min(lams), max(lams)
    for method, label in LABELS.items():
        sel = [r for r in rows if r["method"] == method]
        if not sel:
            continue
        for ax, key in zip(axes, ("accuracy", "sparsity")):
            mean = np.array([r[f"{key}_mean"] for r in sel])
            std = np.array([r[f"{key}_std"] for r in sel])
            if sel[0]["lambda"] is None:  # no lambda: a constant line across the grid
                x, mean, std = np.array([lo, hi]), np.repeat(mean, 2), np.repeat(std, 2)
            else:
                x = np.array([r["lambda"] for r in sel])
            ax.plot(x, mean, STYLES[method], label=label, markersize=5)
            ax.fill_between(x, mean - std, mean + std, color=STYLES[method][:2] if method != "logreg" else "k", alpha=0.12)
    draws = rows[0]["draws"]
    for ax, title in zip(axes, ("validation accuracy", "sparsity (fraction of coefficients exactly 0)")):
        ax.set_xscale("log")
        ax.set_xlabel(r"$\lambda$")
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylim(0.45, 1.02)
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Digits 0 vs 1, logistic regression on {source}: mean over {draws} draws")
    fig.tight_layout()
    _save(fig, path)


def fig4(mask: np.ndarray | None, x_val: np.ndarray, y_val: np.ndarray, side: int, path: Path, lam: float | None) -> None:
    """(a) the mask on the pixel grid, (b) eight validation digits (four 0s, four 1s) and the same digits masked."""
    fig = plt.figure(figsize=(11, 4.2))
    grid = fig.add_gridspec(2, 6, width_ratios=[2.2, 0.15, 1, 1, 1, 1])
    ax = fig.add_subplot(grid[:, 0])
    if mask is None:
        ax.text(0.5, 0.5, "no log mask within one point\nof logistic regression", ha="center", va="center")
        ax.set_axis_off()
        mask = np.ones(side * side)
    else:
        im = ax.imshow(mask.reshape(side, side), cmap="viridis", vmin=0, vmax=1)
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_title(f"(a) log mask, $\\lambda$={lam:.2g}\n{int((mask > 0).sum())} of {mask.size} pixels kept", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    picks = np.concatenate([np.flatnonzero(y_val == 0)[:4], np.flatnonzero(y_val == 1)[:4]])
    for i, k in enumerate(picks):  # row 0: the 0s, row 1: the 1s; each tile is original | masked
        ax = fig.add_subplot(grid[i // 4, 2 + i % 4])
        gap = np.full((side, 1), 0.5)  # grey divider between the two halves
        pair = [x_val[k].reshape(side, side), gap, (x_val[k] * mask).reshape(side, side)]
        ax.imshow(np.concatenate(pair, axis=1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"digit {int(y_val[k])}: original | masked", fontsize=7)
        ax.set_axis_off()
    fig.suptitle("(b) validation samples of draw 0, original and multiplied by the mask", x=0.62, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
