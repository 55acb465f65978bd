"""The reference pipeline of bench/speed.py: the conventional PyTorch style, timed the same way as ours.

A `torch.utils.data.Dataset` returning one sample at a time with per-sample transforms written with
plain torch ops (what torchvision's RandomCrop(padding=4) / RandomHorizontalFlip / ToTensor /
Normalize do), a `torch.utils.data.DataLoader` (shuffle, batch 128), fp32, no compilation, and a plain
training loop over the same nn.Module architecture with torch.optim.SGD and a per-iteration LambdaLR.
The soft-mask reference puts one mask nn.Parameter on each prunable layer with torch.nn.utils.parametrize
(weight * mask recomputed in every forward), sums the log penalty with a Python loop over the masks, and
clamps each mask to [0, 1] in a Python loop. Nothing here imports torchvision.
"""
from __future__ import annotations

import math
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, Dataset

from harness import BATCH, Workload, build_model, synchronize
from open_lth_concave.datasets.base import DatasetSpec, ImageData
from open_lth_concave.datasets.loader import PAD


class PerSampleDataset(Dataset):
    """One uint8 image at a time -> [pad 4 + random crop, random horizontal flip] -> float/255 ->
    normalize, all per sample (torchvision's CIFAR recipe, here with plain torch ops)."""

    def __init__(self, data: ImageData, spec: DatasetSpec, augment: bool):
        self.images = data.images
        self.labels = data.labels.tolist()       # python ints, as torchvision datasets return
        self.augment = augment
        self.height, self.width = data.images.shape[2:]
        self.mean = torch.tensor(spec.mean).view(-1, 1, 1)
        self.std = torch.tensor(spec.std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i]                                             # uint8 [C, H, W]
        if self.augment:
            img = F.pad(img, (PAD, PAD, PAD, PAD))                      # RandomCrop(padding=4)
            top = int(torch.randint(0, 2 * PAD + 1, (1,)).item())
            left = int(torch.randint(0, 2 * PAD + 1, (1,)).item())
            img = img[:, top:top + self.height, left:left + self.width]
            if torch.rand(1).item() < 0.5:                               # RandomHorizontalFlip
                img = img.flip(-1)
        x = img.float().div(255.0)                                       # ToTensor
        x = x.sub(self.mean).div(self.std)                               # Normalize
        return x, self.labels[i]


class MaskParametrization(nn.Module):
    """weight -> weight * mask, with the mask a trainable nn.Parameter (recomputed at every access)."""

    def __init__(self, shape: torch.Size, value: float):
        super().__init__()
        self.mask = nn.Parameter(torch.full(shape, value))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def add_reference_masks(model: nn.Module, ignore: Optional[str]) -> list[nn.Parameter]:
    skip = {s.strip() for s in (ignore or "").split(",") if s.strip()}
    masks = []
    for name in model.prunable_layer_names:
        if name in skip:
            continue
        module = model.get_submodule(name.rsplit(".", 1)[0])
        p = MaskParametrization(module.weight.shape, 0.5)
        parametrize.register_parametrization(module, "weight", p)
        masks.append(p.mask)
    return masks


def reference_log_penalty(masks: list[nn.Parameter], lam: float = 1e-6, eps: float = 0.1) -> torch.Tensor:
    scale = math.log((1 + eps) / eps)
    total = 0.0
    for m in masks:                                                      # Python loop over layers
        total = total + (torch.log1p(m / eps) / scale).sum()
    return lam * total


def _cycle(loader: DataLoader):
    while True:
        yield from loader


def time_reference(w: Workload, strategy: str, dataset: PerSampleDataset, device: torch.device,
                   workers: int, warmup: int, steps: int) -> float:
    """Seconds per step of the conventional loop over `steps` iterations after `warmup`."""
    model = build_model(w).to(device)
    masks = add_reference_masks(model, w.soft_mask_ignore) if strategy == "soft_mask" else []
    mask_ids = {id(m) for m in masks}
    hp = w.hparams
    groups = [{"params": [p for p in model.parameters() if id(p) not in mask_ids]}]
    if masks:
        groups.append({"params": masks, "weight_decay": 0.0})
    optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay or 0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda", drop_last=False)
    batches = _cycle(loader)
    model.train()
    t0 = None
    for i in range(warmup + steps):
        if i == warmup:
            synchronize(device)
            t0 = time.perf_counter()
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = criterion(model(x), y)
        if masks:
            loss = loss + reference_log_penalty(masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if masks:
            with torch.no_grad():
                for m in masks:
                    m.clamp_(0.0, 1.0)
    synchronize(device)
    seconds = time.perf_counter() - t0
    del batches  # shuts the workers down
    return seconds / steps
