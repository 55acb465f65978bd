"""What every job needs: data loaders on the device, a seeded model, the rewind-point state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from pathlib import Path

import torch
from torch import nn

from open_lth_concave.foundations.hparams import DatasetHparams, ModelHparams, TrainingHparams
from open_lth_concave.platform import Platform

EVAL_BATCH = 1024


@dataclass
class Data:
    spec: object          # datasets.base.DatasetSpec
    train: object         # datasets.loader.BatchLoader
    test: object

    @property
    def iterations_per_epoch(self) -> int:
        return self.train.iterations_per_epoch


def make_data(dataset: DatasetHparams, training: TrainingHparams, replicate: int, platform: Platform) -> Data:
    """Loaders seeded from the replicate unless explicit seeds are given (so every run is reproducible)."""
    from open_lth_concave.datasets.loader import BatchLoader, load_dataset
    spec, train = load_dataset(dataset, train=True, seed=replicate)
    _, test = load_dataset(dataset, train=False, seed=replicate)
    order_seed = training.data_order_seed if training.data_order_seed is not None else replicate
    device = platform.torch_device
    train_loader = BatchLoader(train, spec, dataset.batch_size, device, train=True,
                               augment=spec.augment and not dataset.do_not_augment, seed=order_seed,
                               augment_seed=dataset.transformation_seed, channels_last=platform.channels_last)
    test_loader = BatchLoader(test, spec, EVAL_BATCH, device, train=False, augment=False, seed=0,
                              channels_last=platform.channels_last)
    return Data(spec, train_loader, test_loader)


def make_model(model_hparams: ModelHparams, spec, replicate: int) -> nn.Module:
    """A freshly initialized network; the replicate is the initialization seed."""
    from open_lth_concave.models import get_model
    generator = torch.Generator().manual_seed(replicate)
    return get_model(model_hparams, spec.image_shape, spec.num_classes, generator)


def banner(title: str, desc_text: str, location: Path, platform: Optional[Platform] = None,
           training: Optional[TrainingHparams] = None) -> str:
    rule = "=" * 82
    reduced = bool(training is not None and training.apex_fp16)
    where = f"Platform: {platform.summary(reduced)}\n" if platform is not None else ""
    return f"{rule}\n{title}\n{'-' * 82}\n{desc_text}\n{where}Output Location: {location}\n{rule}\n"
