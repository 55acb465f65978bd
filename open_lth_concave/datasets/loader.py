"""From hyperparameters to device-resident batches.

Whole datasets here are small enough to live on the training device as uint8, so instead of a
per-sample DataLoader the loader indexes, crops and flips whole batches with tensor ops. All random
choices of an epoch are drawn up front from a generator seeded by (seed, epoch), which is what makes
resuming mid-epoch reproduce the uninterrupted run exactly.
"""
from __future__ import annotations

import hashlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F

from open_lth_concave.datasets.base import DatasetSpec, ImageData, registry
from open_lth_concave.foundations.hparams import DatasetHparams
from open_lth_concave.foundations.paths import datasets_root

PAD = 4
_BLUR_CHUNK = 4096
_cache: dict[tuple[str, bool, str], ImageData] = {}


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from several values; hashing (unlike seed + epoch) keeps replicates' streams unrelated."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def clear_cache() -> None:
    _cache.clear()


def read(spec: DatasetSpec, train: bool) -> ImageData:
    """The raw split, read once per process (repeated runs in one process, e.g. lottery levels, are free)."""
    folder = datasets_root() / spec.name
    key = (spec.name, train, "" if spec.embedded else str(folder.resolve()))
    if key not in _cache:
        _cache[key] = spec.load(folder, train)
    return _cache[key]


def subsample(data: ImageData, fraction: float, seed: int) -> ImageData:
    """A seeded subset that ignores classes, kept in the original order."""
    keep = max(1, round(len(data) * fraction))
    chosen = torch.randperm(len(data), generator=_generator(seed, "subsample"))[:keep].sort().values
    return ImageData(data.images[chosen], data.labels[chosen])


def randomize_labels(data: ImageData, fraction: float, num_classes: int, seed: int) -> ImageData:
    """Give a seeded `fraction` of examples a uniformly random label (which may equal the true one)."""
    g = _generator(seed, "random_labels")
    count = round(len(data) * fraction)
    chosen = torch.randperm(len(data), generator=g)[:count]
    labels = data.labels.clone()
    labels[chosen] = torch.randint(0, num_classes, (count,), generator=g)
    return ImageData(data.images, labels)


def blur(data: ImageData, factor: int) -> ImageData:
    """Average-pool by `factor`, then bilinearly upsample back to the original size, staying uint8."""
    if factor == 1:
        return data
    n, _, h, w = data.images.shape
    small = (math.ceil(h / factor), math.ceil(w / factor))
    out = torch.empty_like(data.images)
    for start in range(0, n, _BLUR_CHUNK):
        x = data.images[start:start + _BLUR_CHUNK].float()
        x = F.interpolate(F.adaptive_avg_pool2d(x, small), size=(h, w), mode="bilinear", align_corners=False)
        out[start:start + _BLUR_CHUNK] = x.round().clamp_(0, 255).to(torch.uint8)
    return ImageData(out, data.labels)


def load_dataset(dataset_hparams: DatasetHparams, train: bool, seed: int) -> tuple[DatasetSpec, ImageData]:
    """The spec and the split; the train split gets the subsample/random-label/blur transformations,
    drawn from `seed` (the caller passes transformation_seed, or the replicate when that is unset)."""
    spec = registry.get(dataset_hparams.dataset_name)
    data = read(spec, train)
    if train:
        if dataset_hparams.subsample_fraction is not None:
            data = subsample(data, dataset_hparams.subsample_fraction, seed)
        if dataset_hparams.random_labels_fraction is not None:
            data = randomize_labels(data, dataset_hparams.random_labels_fraction, spec.num_classes, seed)
        if dataset_hparams.blur_factor is not None:
            data = blur(data, dataset_hparams.blur_factor)
    if len(data) == 0:
        from open_lth_concave.foundations.errors import UserError
        raise UserError(f"dataset {spec.name} has no {'training' if train else 'test'} examples; check its files "
                        f"under {datasets_root() / spec.name}")
    return spec, data


class BatchLoader:
    """Yields normalized float32 NCHW batches on `device`; `augment` applies only when `train`."""

    def __init__(self, data: ImageData, spec: DatasetSpec, batch_size: int, device: torch.device | str, *,
                 train: bool, augment: bool, seed: int, channels_last: bool = False,
                 augment_seed: int | None = None):
        if batch_size <= 0:
            raise ValueError(f"invalid batch_size {batch_size}: must be a positive integer")
        if len(data) == 0:
            raise ValueError(f"dataset {spec.name!r} has no examples")
        channels = data.images.shape[1]
        if len(spec.mean) != channels or len(spec.std) != channels:
            raise ValueError(f"dataset {spec.name!r} has {channels} channels but mean/std for {len(spec.mean)}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.augment = augment and train
        self.seed = seed
        self.augment_seed = seed if augment_seed is None else augment_seed  # open_lth's transformation_seed
        self.channels_last = channels_last
        from open_lth_concave.foundations import distributed
        self.rank, self.world = (distributed.rank(), distributed.world_size()) if train else (0, 1)
        self._height, self._width = data.images.shape[2:]
        images = F.pad(data.images, (PAD, PAD, PAD, PAD)) if self.augment else data.images
        self._images = images.to(self.device)
        self._labels = data.labels.to(self.device)
        shape = (1, channels, 1, 1)
        self._mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(shape)
        self._scale = (1.0 / (255.0 * torch.tensor(spec.std, dtype=torch.float32))).to(self.device).view(shape)
        self._offset = self._mean * 255.0 * self._scale
        # [N, C, 2*PAD+1, 2*PAD+1, H, W]: a strided view of all crops (only used when augmenting).
        self._windows = self._images.unfold(2, self._height, 1).unfold(3, self._width, 1)

    @property
    def num_examples(self) -> int:
        return self._labels.shape[0]

    def examples_in_batch(self, iteration_in_epoch: int) -> int:
        """Size of the global batch at this position (all processes together)."""
        return min(self.batch_size, self.num_examples - iteration_in_epoch * self.batch_size)

    @property
    def iterations_per_epoch(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        # (x/255 - mean)/std folded into one multiply-add.
        x = x.float().mul_(self._scale).sub_(self._offset)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _crop_flip(self, idx: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Crop each padded image at its own offset, then mirror where asked, as two whole-batch ops.

        `_windows` views every (dy, dx) crop of every image without copying, so one advanced index
        picks the batch's crops (about 3x faster on CPU than gathering rows and columns separately).
        """
        crops = self._windows[idx, :, dy, dx]                                  # [B, C, H, W]
        return torch.where(flip.view(-1, 1, 1, 1), crops.flip(-1), crops)

    def batches(self, epoch: int, start_iteration: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not 0 <= start_iteration <= self.iterations_per_epoch:
            raise ValueError(f"invalid start_iteration {start_iteration}: must be in 0..{self.iterations_per_epoch}")
        n, bs = self.num_examples, self.batch_size
        if not self.train:
            for i in range(start_iteration, self.iterations_per_epoch):
                yield self._normalize(self._images[i * bs:(i + 1) * bs]), self._labels[i * bs:(i + 1) * bs]
            return
        g = _generator(self.seed, epoch)
        order = torch.randperm(n, generator=g).to(self.device)
        if self.augment:
            ga = g if self.augment_seed == self.seed else _generator(self.augment_seed, epoch, "augment")
            offsets = torch.randint(0, 2 * PAD + 1, (2, n), generator=ga).to(self.device)
            flips = torch.randint(0, 2, (n,), generator=ga).bool().to(self.device)
        for i in range(start_iteration, self.iterations_per_epoch):
            window = slice(i * bs, (i + 1) * bs)
            if self.world > 1:  # data parallel: this process's contiguous share of the global batch
                q, r = divmod(self.examples_in_batch(i), self.world)
                start = window.start + self.rank * q + min(self.rank, r)
                window = slice(start, start + q + (1 if self.rank < r else 0))
            idx = order[window]
            if self.augment:
                x = self._crop_flip(idx, offsets[0, window], offsets[1, window], flips[window])
            else:
                x = self._images[idx]
            yield self._normalize(x), self._labels[idx]
