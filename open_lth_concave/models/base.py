"""Models: a registry of architecture families, each owning its default hyperparameters.

A family registers a name pattern (e.g. `cifar_resnet_<D>`); resolving a name gives a `ModelSpec`
whose `build` makes the network for a dataset's input shape and class count, and whose `defaults`
are the hyperparameter groups loaded by `--default_hparams=<model name>`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from open_lth_concave.foundations.registry import Registry


class Model(nn.Module):
    """Base of every network: says which tensors are prunable and which is the output layer."""

    @property
    def prunable_layer_names(self) -> list[str]:
        """Weights of conv and linear layers (not biases, not batch norm), in definition order."""
        return [f"{name}.weight" for name, module in self.named_modules()
                if isinstance(module, (nn.Conv2d, nn.Linear))]

    @property
    def output_layer_names(self) -> list[str]:
        raise NotImplementedError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    # build(input_shape (C, H, W), num_classes) -> Model; initialization is applied by the caller.
    build: Callable[[tuple[int, int, int], int], Model]
    # {"dataset": {...}, "model": {...}, "training": {...}, "pruning": {...}}
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)


registry: Registry[ModelSpec] = Registry("model")
