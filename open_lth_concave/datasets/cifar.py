"""CIFAR-10 and CIFAR-100 from the official python batches, unpickled with a loader that can only
rebuild numpy arrays: a pickle can run arbitrary code, and a dataset file is not trusted code."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from open_lth_concave.datasets import download
from open_lth_concave.datasets.base import DatasetMissingError, DatasetSpec, ImageData, register
from open_lth_concave.foundations.errors import UserError
from open_lth_concave.foundations.io import CorruptFileError

try:  # numpy >= 2 moved the implementation; the old module path still appears inside old pickles
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """A pickle that references something other than numpy's array-rebuilding machinery."""


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a numpy array needs; everything else is refused before it can run."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED)
            raise UnsafePickleError(f"refusing to load global {module}.{name} from a pickle; allowed: {allowed}") from None


def restricted_load(path: Path) -> Any:
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, encoding="bytes").load()
        except UnsafePickleError as e:
            raise UnsafePickleError(f"{path}: {e}") from None
        except Exception as e:  # truncated or garbage files fail in many ways
            raise CorruptFileError(f"cannot read {path}: {type(e).__name__}: {e}") from None


def _get(batch: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise CorruptFileError(f"cannot read {path}: no {key!r} entry (has {sorted(map(str, batch))})")


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = restricted_load(path)
    if not isinstance(batch, dict):
        raise CorruptFileError(f"cannot read {path}: holds a {type(batch).__name__}, expected a dict")
    try:  # a tampered batch may hold anything under these keys
        data = np.asarray(_get(batch, "data", path))
        labels = np.asarray(_get(batch, label_key, path), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise CorruptFileError(f"cannot read {path}: its data or labels are not arrays of numbers ({e})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CorruptFileError(f"cannot read {path}: data is {data.dtype} {data.shape}, expected uint8 [N, 3072]")
    if len(data) == 0:
        raise CorruptFileError(f"cannot read {path}: it holds no images")
    if labels.shape != (len(data),):
        raise CorruptFileError(f"cannot read {path}: labels of shape {labels.shape} for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise CorruptFileError(f"cannot read {path}: labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def _make_loader(subdir: str, train_files: list[str], test_files: list[str], label_key: str,
                 num_classes: int, source: download.Source):
    def load(folder: Path, train: bool) -> ImageData:
        names = train_files if train else test_files
        paths = [folder / subdir / n for n in names]
        expected = ", ".join(f"{subdir}/{n}" for n in names)
        if not all(p.is_file() for p in paths):
            download.ensure(folder, False, expected, [source],
                            f"download {source.url} and unpack it into that folder")
            if not all(p.is_file() for p in paths):
                raise DatasetMissingError(f"dataset files missing in {folder}: expected {expected} after download")
        parts = [read_batch(p, label_key, num_classes) for p in paths]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return ImageData(torch.from_numpy(images), torch.from_numpy(labels))
    return load


CIFAR10_SOURCE = download.Source("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                                 "c58f30108f718f92721af3b95e74349a", "cifar-10-python.tar.gz", extract=True)
CIFAR100_SOURCE = download.Source("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                                  "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python.tar.gz", extract=True)

CIFAR10 = register(DatasetSpec(
    name="cifar10", num_classes=10, image_shape=(3, 32, 32),
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), augment=True,
    load=_make_loader("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                      "labels", 10, CIFAR10_SOURCE)))

CIFAR100 = register(DatasetSpec(
    name="cifar100", num_classes=100, image_shape=(3, 32, 32),
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), augment=True,
    load=_make_loader("cifar-100-python", ["train"], ["test"], "fine_labels", 100, CIFAR100_SOURCE)))
