import numpy as np
import torch

from platforms.platform import get_platform


class ImageDataset:
    """Images (uint8 N x H x W) and labels; examples come out as normalized float tensors."""

    def __init__(self, examples, labels, mean, std):
        self._examples, self._labels, self._mean, self._std = examples, labels, mean, std

    def __len__(self):
        return len(self._labels)


class DataLoader:
    """Batches in a shuffled order that a seed fixes (`shuffle(seed)` before each epoch)."""

    def __init__(self, dataset, batch_size):
        self._dataset, self._batch_size, self._order = dataset, batch_size, torch.arange(len(dataset))
        self._iterations_per_epoch = np.ceil(len(dataset) / batch_size).astype(int)

    iterations_per_epoch = property(lambda self: self._iterations_per_epoch)

    def shuffle(self, seed):
        g = torch.Generator()
        if seed is not None:
            g.manual_seed(seed)
        else:
            g.seed()
        self._order = torch.randperm(len(self._dataset), generator=g)

    def __iter__(self):
        d = self._dataset
        for start in range(0, len(d), self._batch_size):
            idx = self._order[start:start + self._batch_size]
            x = (d._examples[idx].float() / 255.0 - d._mean) / d._std
            yield x.unsqueeze(1), d._labels[idx]
