"""Fully connected LeNets: `mnist_lenet_<w1>_<w2>...` and `digits_lenet_<w1>_<w2>...`.

Both names build the same network (ReLU hidden layers `fc_layers.<i>`, output `fc`); they differ only in
default hyperparameters. The input size is taken from the dataset, so either runs on any image set.
"""
from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

from open_lth_concave.models.base import Model, ModelSpec, registry


class LeNet(Model):
    def __init__(self, input_size: int, hidden_widths: list[int], num_classes: int):
        super().__init__()
        sizes = [input_size] + list(hidden_widths)
        self.fc_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.fc = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.fc_layers:
            x = torch.relu(layer(x))
        return self.fc(x)

    @property
    def output_layer_names(self) -> list[str]:
        return ["fc.weight", "fc.bias"]


def parse_widths(text: str | None) -> list[int]:
    """`300_100` -> [300, 100]; anything else (empty, zero, non-digits) is a ValueError naming it."""
    parts = (text or "").split("_")
    if not text or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"hidden widths {text or ''!r} must be one or more positive integers "
                         "separated by '_' (e.g. 300_100)")
    return [int(p) for p in parts]


def _spec(name: str, widths: list[int], defaults: dict[str, dict[str, Any]]) -> ModelSpec:
    def build(input_shape: tuple[int, int, int], num_classes: int) -> Model:
        return LeNet(math.prod(input_shape), widths, num_classes)
    return ModelSpec(name=name, build=build, defaults=defaults)


def _model_defaults(name: str) -> dict[str, Any]:
    return {"model_name": name, "model_init": "kaiming_normal", "batchnorm_init": "uniform"}


_PRUNING = {"pruning_strategy": "sparse_global", "pruning_fraction": 0.2, "pruning_layers_to_ignore": "fc.weight"}


@registry.register_pattern(r"mnist_lenet(?:_(.*))?", "mnist_lenet_<w1>_<w2>...", example="mnist_lenet_16_8")
def mnist_lenet(match: re.Match) -> ModelSpec:
    widths = parse_widths(match.group(1))
    name = match.group(0)
    return _spec(name, widths, {
        "dataset": {"dataset_name": "mnist", "batch_size": 128},
        "model": _model_defaults(name),
        "training": {"optimizer_name": "sgd", "lr": 0.1, "training_steps": "40ep"},
        "pruning": dict(_PRUNING),
    })


@registry.register_pattern(r"digits_lenet(?:_(.*))?", "digits_lenet_<w1>_<w2>...", example="digits_lenet_16")
def digits_lenet(match: re.Match) -> ModelSpec:
    # scikit-learn's 8x8 digits (1437 training images): small batches and momentum reach ~97% test
    # accuracy in 20 epochs (900 steps), a few seconds on a CPU.
    widths = parse_widths(match.group(1))
    name = match.group(0)
    return _spec(name, widths, {
        "dataset": {"dataset_name": "digits", "batch_size": 32},
        "model": _model_defaults(name),
        "training": {"optimizer_name": "sgd", "lr": 0.05, "momentum": 0.9, "training_steps": "20ep"},
        "pruning": dict(_PRUNING),
    })
