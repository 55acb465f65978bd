"""CIFAR-style ResNets (He et al. 2016, section 4.2): `cifar_resnet_<D>` and `cifar_resnet_<D>_<W>`.

D = 6n + 2 layers: a 3x3 stem, three stages of n basic blocks with widths W, 2W, 4W (W = 16 unless
given), global average pooling and a linear `fc`. Global pooling lets the same network run on 32x32
CIFAR and 64x64 Tiny ImageNet.
"""
from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from open_lth_concave.models.base import Model, ModelSpec, registry


class Block(nn.Module):
    """Two 3x3 conv+BN layers with an identity shortcut, or a 1x1 conv+BN one when the shape changes."""

    def __init__(self, in_width: int, out_width: int, downsample: bool):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(in_width, out_width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_width)
        self.conv2 = nn.Conv2d(out_width, out_width, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_width)
        if downsample or in_width != out_width:
            self.shortcut = nn.Sequential(nn.Conv2d(in_width, out_width, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_width))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(Model):
    def __init__(self, in_channels: int, blocks_per_stage: int, width: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks = []
        current = width
        for stage in range(3):
            stage_width = width * 2 ** stage
            for index in range(blocks_per_stage):
                blocks.append(Block(current, stage_width, downsample=stage > 0 and index == 0))
                current = stage_width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(current, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        x = x.mean(dim=(2, 3))
        return self.fc(x)

    @property
    def output_layer_names(self) -> list[str]:
        return ["fc.weight", "fc.bias"]


def cifar_defaults(name: str, layers_to_ignore: str | None) -> dict[str, dict[str, Any]]:
    """The CIFAR-10 recipe shared by the ResNet and VGG families (they differ only in ignored layers)."""
    pruning: dict[str, Any] = {"pruning_strategy": "sparse_global", "pruning_fraction": 0.2}
    if layers_to_ignore:
        pruning["pruning_layers_to_ignore"] = layers_to_ignore
    return {
        "dataset": {"dataset_name": "cifar10", "batch_size": 128},
        "model": {"model_name": name, "model_init": "kaiming_normal", "batchnorm_init": "uniform"},
        "training": {"optimizer_name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                     "milestone_steps": "80ep,120ep", "gamma": 0.1, "training_steps": "160ep"},
        "pruning": pruning,
    }


@registry.register_pattern(r"cifar_resnet_(\d+)(?:_(\d+))?", "cifar_resnet_<D>[_<W>]", example="cifar_resnet_8_4")
def cifar_resnet(match: re.Match) -> ModelSpec:
    depth = int(match.group(1))
    width = int(match.group(2)) if match.group(2) is not None else 16
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"depth {depth} must be 6n+2 with n >= 1 (e.g. 8, 14, 20, 32, 56, 110)")
    if width < 1:
        raise ValueError(f"width {width} must be a positive integer")
    blocks_per_stage = (depth - 2) // 6

    def build(input_shape: tuple[int, int, int], num_classes: int) -> Model:
        return CifarResNet(input_shape[0], blocks_per_stage, width, num_classes)

    return ModelSpec(name=match.group(0), build=build, defaults=cifar_defaults(match.group(0), None))
