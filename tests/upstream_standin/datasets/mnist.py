import gzip
import os

import numpy as np
import torch

from datasets import base
from platforms.platform import get_platform


def _read_idx(folder, name):
    for candidate, opener in ((name, open), (name + '.gz', gzip.open)):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            with opener(path, 'rb') as fp:
                raw = fp.read()
            ndim = raw[3]
            dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
            return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy())
    raise FileNotFoundError(os.path.join(folder, name))


class Dataset(base.ImageDataset):
    """MNIST from the IDX files under <dataset_root>/mnist/MNIST/raw (torchvision's folder)."""

    @staticmethod
    def num_train_examples(): return 60000

    @staticmethod
    def num_test_examples(): return 10000

    @staticmethod
    def num_classes(): return 10

    @staticmethod
    def _load(stem):
        folder = os.path.join(get_platform().dataset_root, 'mnist', 'MNIST', 'raw')
        return Dataset(_read_idx(folder, stem + '-images-idx3-ubyte'), _read_idx(folder, stem + '-labels-idx1-ubyte').long())

    @staticmethod
    def get_train_set(use_augmentation): return Dataset._load('train')

    @staticmethod
    def get_test_set(): return Dataset._load('t10k')

    def __init__(self, examples, labels):
        super().__init__(examples, labels, 0.1307, 0.3081)


DataLoader = base.DataLoader
