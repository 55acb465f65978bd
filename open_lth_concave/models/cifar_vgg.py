"""CIFAR VGGs (Simonyan & Zisserman configurations A, B, D, E): `cifar_vgg_<11|13|16|19>`.

3x3 conv + BN + ReLU layers with 2x2 max pooling between the five width groups (the last pooling
replaced by global average pooling, which equals it on 32x32 inputs and adapts to 64x64), then `fc`.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from open_lth_concave.models.base import Model, ModelSpec, registry
from open_lth_concave.models.cifar_resnet import cifar_defaults

# Convolutions per width group (64, 128, 256, 512, 512) for each depth.
GROUP_SIZES = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
GROUP_WIDTHS = (64, 128, 256, 512, 512)


class ConvModule(nn.Module):
    def __init__(self, in_width: int, out_width: int):
        super().__init__()
        self.conv = nn.Conv2d(in_width, out_width, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class CifarVGG(Model):
    def __init__(self, in_channels: int, depth: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        current = in_channels
        for group, (count, width) in enumerate(zip(GROUP_SIZES[depth], GROUP_WIDTHS)):
            if group > 0:
                layers.append(nn.MaxPool2d(2, 2))
            for _ in range(count):
                layers.append(ConvModule(current, width))
                current = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(current, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x)
        return self.fc(x.mean(dim=(2, 3)))

    @property
    def output_layer_names(self) -> list[str]:
        return ["fc.weight", "fc.bias"]


@registry.register_pattern(r"cifar_vgg_(\d+)", "cifar_vgg_<11|13|16|19>", example="cifar_vgg_11")
def cifar_vgg(match: re.Match) -> ModelSpec:
    depth = int(match.group(1))
    if depth not in GROUP_SIZES:
        raise ValueError(f"depth {depth} must be one of {', '.join(map(str, GROUP_SIZES))}")

    def build(input_shape: tuple[int, int, int], num_classes: int) -> Model:
        return CifarVGG(input_shape[0], depth, num_classes)

    return ModelSpec(name=match.group(0), build=build, defaults=cifar_defaults(match.group(0), "fc.weight"))
