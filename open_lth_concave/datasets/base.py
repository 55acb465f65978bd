"""A dataset is a uint8 image tensor plus int64 labels; a registered `DatasetSpec` knows how to read it.

Readers return `ImageData` on the CPU; the loader (`datasets/loader.py`) moves it to the training
device once and slices/augments whole batches there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from open_lth_concave.foundations.errors import UserError
from open_lth_concave.foundations.registry import Registry


class DatasetMissingError(UserError, RuntimeError):
    """Files are missing and cannot be downloaded; the one-line message says where and how to get them."""


@dataclass
class ImageData:
    images: torch.Tensor  # uint8, [N, C, H, W]
    labels: torch.Tensor  # int64, [N]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.labels.shape[0]} labels for {self.images.shape[0]} images")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True)
class DatasetSpec:
    """What the core needs to know about a dataset. `load(folder, train)` reads `folder` (which is
    `$OPEN_LTH_DATASETS/<name>`), downloading into it when allowed, else raising DatasetMissingError."""
    name: str
    num_classes: int
    image_shape: tuple[int, int, int]        # C, H, W
    mean: tuple[float, ...]                  # per channel, on the 0..1 scale
    std: tuple[float, ...]
    augment: bool                            # random crop (4-pixel padding) and horizontal flip
    load: Callable[[Path, bool], ImageData]
    embedded: bool = False                   # needs no files (e.g. scikit-learn digits)


registry: Registry[DatasetSpec] = Registry("dataset")


def register(spec: DatasetSpec) -> DatasetSpec:
    registry.add(spec.name, spec)
    return spec
