"""Section IV-C of the paper, runnable: accuracy and sparsity versus lambda for five methods (Fig. 3).

One call = `draws` random 0-vs-1 splits, every method over its lambda grid, means and standard
deviations over draws, a CSV, two figures and a summary. All draws and lambdas of a method are
solved at once as a batch, so 100 draws take well under two minutes on two CPU cores.
"""
from __future__ import annotations

import csv
import io
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from open_lth_concave.foundations.errors import UserError
from open_lth_concave.foundations.io import save_json, save_text
from open_lth_concave.illustrate import data, methods, plots

METHODS = ("logreg", "l1_subgradient", "mask_l1", "mask_log", "sklearn_l1")
LAMBDA_METHODS = METHODS[1:]
_HALF_DECADES = [float(10.0 ** (e / 2)) for e in range(-10, 0)]  # 1e-5 ... 10^-0.5
DEFAULT_LAMBDAS: dict[str, list[float]] = {
    "l1_subgradient": [float(10.0 ** (e / 2)) for e in range(-8, 1)],  # 1e-4 ... 1
    "mask_l1": _HALF_DECADES,
    "mask_log": _HALF_DECADES,
    "sklearn_l1": _HALF_DECADES,
}
ACCURACY_SLACK = 0.01  # "comparable accuracy": within one point of plain logistic regression
CSV_FIELDS = ("method", "lambda", "accuracy_mean", "accuracy_std", "sparsity_mean", "sparsity_std", "draws", "data_source")


class IllustrationError(UserError, ValueError):
    """Bad arguments; raised before anything is computed or written."""


def _check_output_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise IllustrationError(f"output dir {path} exists and is not a directory")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise IllustrationError(f"output dir {path} is not writable")


def _lambda_grids(lambdas: Sequence[float] | Mapping[str, Sequence[float]] | None) -> dict[str, list[float]]:
    if lambdas is None:
        return {k: list(v) for k, v in DEFAULT_LAMBDAS.items()}
    grids = {k: list(lambdas.get(k, DEFAULT_LAMBDAS[k])) for k in LAMBDA_METHODS} if isinstance(lambdas, Mapping) \
        else {k: [float(v) for v in lambdas] for k in LAMBDA_METHODS}
    for name, grid in grids.items():
        if not grid or any(not (np.isfinite(v) and v > 0) for v in grid):
            raise IllustrationError(f"invalid lambdas for {name}: {grid}; need a non-empty list of positive numbers")
    return grids


def _rows(method: str, lambdas: Sequence[float | None], acc: np.ndarray, spa: np.ndarray, source: str) -> list[dict]:
    """acc/spa: (B, L) per draw; one row per lambda with mean and std over draws."""
    return [dict(method=method, **{"lambda": lam}, accuracy_mean=float(acc[:, j].mean()), accuracy_std=float(acc[:, j].std()),
                 sparsity_mean=float(spa[:, j].mean()), sparsity_std=float(spa[:, j].std()), draws=acc.shape[0],
                 data_source=source) for j, lam in enumerate(lambdas)]


def _sparsest_acceptable(rows: list[dict], method: str, floor: float) -> dict | None:
    ok = [r for r in rows if r["method"] == method and r["accuracy_mean"] >= floor]
    return max(ok, key=lambda r: (r["sparsity_mean"], r["accuracy_mean"])) if ok else None


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "lambda": "" if r["lambda"] is None else repr(r["lambda"])})
    return buffer.getvalue()


@contextmanager
def _one_thread() -> Iterator[None]:
    """Batched solves run on one thread: with two OpenMP threads, any other busy process on a 2-core
    machine makes them spin-wait, measured 10-40x slower; one thread degrades gracefully."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _solve_all(d: data.Draws, grids: dict[str, list[float]], seed: int, source: str
               ) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every method on every draw and lambda: the CSV rows and the two mask arrays (B, L, d)."""
    dtype = methods.DTYPE
    x, xv = torch.tensor(d.x_train, dtype=dtype), torch.tensor(d.x_val, dtype=dtype)
    y, yv = torch.tensor(d.y_train, dtype=dtype), torch.tensor(d.y_val, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    lam = {k: torch.tensor(v, dtype=dtype) for k, v in grids.items()}

    def rows_of(method: str, acc: torch.Tensor, zero: torch.Tensor) -> list[dict]:
        lambdas = grids.get(method, [None])
        return _rows(method, lambdas, acc.double().numpy(), zero.double().mean(-1).numpy(), source)

    theta_hat = methods.logistic_regression(x, y, gen)
    rows = rows_of("logreg", methods.accuracy(theta_hat.unsqueeze(1) @ xv.transpose(1, 2), yv), theta_hat[:, None, :-1] == 0)
    theta = methods.l1_subgradient(x, y, lam["l1_subgradient"], gen)
    rows += rows_of("l1_subgradient", methods.accuracy(theta @ xv.transpose(1, 2), yv), theta[..., :-1] == 0)
    masks = {}
    for penalty in ("l1", "log"):
        name = f"mask_{penalty}"
        m = methods.mask_descent(x, y, theta_hat, lam[name], penalty)
        rows += rows_of(name, methods.accuracy(methods.masked_logits(xv, theta_hat, m), yv), m == 0)
        masks[name] = m.double().numpy()
    acc_np, spa_np = methods.sklearn_l1(d.x_train, d.y_train, d.x_val, d.y_val, np.array(grids["sklearn_l1"]))
    rows += _rows("sklearn_l1", grids["sklearn_l1"], acc_np, spa_np, source)
    return rows, masks


def run_illustration(output_dir: str | Path, draws: int = 100,
                     lambdas: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
                     seed: int = 0, data_source: str = "auto", quiet: bool = False) -> dict:
    """Run the illustrative example and write illustrate.csv, fig3/fig4 PNGs and summary.json.

    `lambdas`: one grid for every lambda method, or {method: grid}; None uses DEFAULT_LAMBDAS.
    Raises IllustrationError (nothing written) on bad arguments or explicitly requested missing MNIST.
    """
    start = time.perf_counter()
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise IllustrationError(f"invalid draws {draws!r}: must be an integer >= 1")
    output_dir = Path(output_dir).expanduser()
    _check_output_dir(output_dir)
    grids = _lambda_grids(lambdas)
    try:
        pool = data.load_pool(data_source)
    except ValueError as e:
        raise IllustrationError(str(e)) from None
    say = (lambda *_: None) if quiet else print
    say(f"illustrate: data source {pool.source} (d={pool.x.shape[1]}), {draws} draws")

    d = data.make_draws(pool, draws, seed)
    with _one_thread():
        rows, masks = _solve_all(d, grids, seed, pool.source)

    floor = rows[0]["accuracy_mean"] - ACCURACY_SLACK
    sparsest = {m: _sparsest_acceptable(rows, m, floor) for m in LAMBDA_METHODS}
    fig4 = sparsest["mask_log"]
    mask_image = None
    if fig4 is not None:
        j = grids["mask_log"].index(fig4["lambda"])
        mask_image = masks["mask_log"][0, j]
    elapsed = time.perf_counter() - start

    summary = {
        "data_source": pool.source, "pixels": int(pool.x.shape[1]), "image_side": pool.side, "draws": draws, "seed": seed,
        "samples_per_digit": d.per_digit, "train_per_digit": d.train_per_digit,
        "validation_per_digit": d.per_digit - d.train_per_digit, "split": "per digit (balanced train and validation)",
        "l2_mu": methods.MU, "theta_iters": methods.THETA_ITERS, "mask_iters": methods.MASK_ITERS,
        "mask_start": methods.MASK_START, "theta_init_std": methods.INIT_STD, "lambdas": grids,
        "logreg_accuracy": rows[0]["accuracy_mean"], "accuracy_floor": floor,
        "dead_pixel_fraction": float((d.x_train[..., :-1].max(1) == 0).mean()),
        "l1_subgradient_max_sparsity": max(r["sparsity_mean"] for r in rows if r["method"] == "l1_subgradient"),
        "sparsest_within_one_point": sparsest,
        "fig4": None if fig4 is None else {"lambda": fig4["lambda"], "draw": 0,
                                           "kept_pixels": int((mask_image > 0).sum())},
        "elapsed_seconds": round(elapsed, 2),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    save_text(_csv_text(rows), output_dir / "illustrate.csv")
    plots.fig3(rows, output_dir / "fig3_accuracy_sparsity.png", pool.source)
    plots.fig4(mask_image, d.x_val[0, :, :-1], d.y_val[0], pool.side, output_dir / "fig4_sparse_mask.png",
               None if fig4 is None else fig4["lambda"])
    save_json(summary, output_dir / "summary.json")
    say(f"illustrate: logreg accuracy {floor + ACCURACY_SLACK:.4f}; sparsest within one point: "
        + ", ".join(f"{m} {s['sparsity_mean']:.3f}" if s else f"{m} none" for m, s in sparsest.items()))
    say(f"illustrate: wrote {output_dir} in {elapsed:.1f}s")
    return summary
