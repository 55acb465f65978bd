"""scikit-learn's 8x8 handwritten digits: a tiny real dataset that needs no files, for tests and smoke runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from open_lth_concave.datasets.base import DatasetSpec, ImageData, register

SPLIT_SEED = 0
TEST_FRACTION = 0.2
# Mean/std of the 0..1-scaled train split; tests recompute them so these cannot drift silently.
MEAN = 0.30543
STD = 0.37596


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fixed stratified 80/20 split, sorted so the train set keeps scikit-learn's order."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION,
                                   random_state=SPLIT_SEED, stratify=labels)
    return np.sort(train), np.sort(test)


def load(folder: Path, train: bool) -> ImageData:
    """`folder` is ignored: the data ship inside scikit-learn."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = split_indices(labels)
    chosen = train_idx if train else test_idx
    return ImageData(torch.from_numpy(images[chosen][:, None].copy()), torch.from_numpy(labels[chosen].copy()))


SPEC = register(DatasetSpec(name="digits", num_classes=10, image_shape=(1, 8, 8), mean=(MEAN,), std=(STD,),
                            augment=False, load=load, embedded=True))
