"""Digit-0-versus-1 data for the illustrative example (Section IV-C): MNIST if present, else sklearn digits.

The IDX reader is private on purpose: the illustration must not depend on the training-side dataset
code, and reading IDX is a dozen lines.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from open_lth_concave.foundations.paths import datasets_root

MNIST_CROP = slice(4, 24)  # central 20x20 of the 28x28 grid: d = 400 as in the paper
PER_DIGIT = 200
TRAIN_FRACTION = 0.8  # 160 train / 40 validation per digit when 200 are drawn


class DataUnavailable(ValueError):
    """Asked for MNIST explicitly but the IDX files are not where datasets_root() says."""


@dataclass
class Pool:
    """All candidate images of digits 0 and 1, flattened and scaled to [0, 1]."""
    x: np.ndarray  # (N, d) float64
    y: np.ndarray  # (N,) 0 or 1
    side: int  # images are side x side
    source: str  # "mnist" or "digits"


@dataclass
class Draws:
    """A batch of random train/validation splits; the last column of x is the intercept (always 1)."""
    x_train: np.ndarray  # (B, n_train, d + 1)
    y_train: np.ndarray  # (B, n_train)
    x_val: np.ndarray  # (B, n_val, d + 1)
    y_val: np.ndarray  # (B, n_val)
    per_digit: int
    train_per_digit: int


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(stem: str) -> Path | None:
    root = datasets_root() / "mnist"
    for folder in (root, root / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def mnist_files() -> tuple[Path, Path] | None:
    """(images, labels) of the first split found (train, then t10k), or None."""
    for split in ("train", "t10k"):
        images, labels = _find(f"{split}-images-idx3-ubyte"), _find(f"{split}-labels-idx1-ubyte")
        if images is not None and labels is not None:
            return images, labels
    return None


def load_pool(source: str = "auto") -> Pool:
    """source: 'mnist' (error if missing), 'digits', or 'auto' (mnist when its files exist)."""
    if source not in ("auto", "mnist", "digits"):
        raise ValueError(f"invalid data source {source!r}: expected auto, mnist or digits")
    files = mnist_files() if source in ("auto", "mnist") else None
    if source == "mnist" and files is None:
        raise DataUnavailable(f"no MNIST IDX files under {datasets_root() / 'mnist'}")
    if files is not None:
        images, labels = _read_idx(files[0]), _read_idx(files[1])
        keep = labels < 2
        x = images[keep][:, MNIST_CROP, MNIST_CROP].reshape(int(keep.sum()), -1) / 255.0
        return Pool(x.astype(np.float64), labels[keep].astype(np.int64), 20, "mnist")
    from sklearn.datasets import load_digits  # ships with scikit-learn, no download
    digits = load_digits()
    keep = digits.target < 2
    return Pool(digits.data[keep] / 16.0, digits.target[keep].astype(np.int64), 8, "digits")


def make_draws(pool: Pool, draws: int, seed: int) -> Draws:
    """Per draw: PER_DIGIT images of each digit (fewer if the pool is smaller), split 80/20 per digit.

    The split is per digit, so both train and validation sets are exactly balanced.
    """
    per_digit = min(PER_DIGIT, *(int((pool.y == c).sum()) for c in (0, 1)))
    n_tr = int(round(TRAIN_FRACTION * per_digit))
    rng = np.random.default_rng(seed)
    tr_idx, va_idx = [], []
    for _ in range(draws):
        tr, va = [], []
        for c in (0, 1):
            chosen = rng.choice(np.flatnonzero(pool.y == c), per_digit, replace=False)
            tr.append(chosen[:n_tr])
            va.append(chosen[n_tr:])
        tr_idx.append(np.concatenate(tr))
        va_idx.append(np.concatenate(va))
    x1 = np.concatenate([pool.x, np.ones((len(pool.x), 1))], axis=1)
    tr_idx, va_idx = np.stack(tr_idx), np.stack(va_idx)
    return Draws(x1[tr_idx], pool.y[tr_idx], x1[va_idx], pool.y[va_idx], per_digit, n_tr)
