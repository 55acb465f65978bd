"""Weight initializers, drawn only from an explicit generator so a seed fully fixes the network.

Two registries: `model_inits` (applied to every conv/linear weight; their biases become zero) and
`batchnorm_inits` (applied to every batch-norm layer). Each entry takes the tensor to fill and the
generator. Values are drawn on the generator's device and copied in, so the same seed gives the same
network whatever device the model sits on.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from open_lth_concave.foundations.hparams import ModelHparams
from open_lth_concave.foundations.registry import Registry
from open_lth_concave.models.base import Model

WeightInit = Callable[[torch.Tensor, torch.Generator], None]
BatchNormInit = Callable[[nn.modules.batchnorm._BatchNorm, torch.Generator], None]

model_inits: Registry[WeightInit] = Registry("model initializer")
batchnorm_inits: Registry[BatchNormInit] = Registry("batchnorm initializer")


def _fan_in(weight: torch.Tensor) -> int:
    """Inputs feeding one output unit: in_features, or in_channels * kernel area for a conv."""
    return weight[0].numel()


def kaiming_std(weight: torch.Tensor) -> float:
    """He et al.'s std for ReLU networks, computed over the fan-in."""
    return math.sqrt(2.0 / _fan_in(weight))


def _draw(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """An empty float tensor of the weight's shape on the generator's device, ready to be filled."""
    return torch.empty(weight.shape, dtype=torch.float32, device=generator.device)


def _store(weight: torch.Tensor, values: torch.Tensor) -> None:
    with torch.no_grad():
        weight.copy_(values.to(device=weight.device, dtype=weight.dtype))


@model_inits.register("kaiming_normal")
def kaiming_normal(weight: torch.Tensor, generator: torch.Generator) -> None:
    _store(weight, _draw(weight, generator).normal_(0.0, kaiming_std(weight), generator=generator))


@model_inits.register("kaiming_uniform")
def kaiming_uniform(weight: torch.Tensor, generator: torch.Generator) -> None:
    # U(-b, b) has std b / sqrt(3), so this matches kaiming_normal's variance.
    bound = math.sqrt(3.0) * kaiming_std(weight)
    _store(weight, _draw(weight, generator).uniform_(-bound, bound, generator=generator))


@model_inits.register("binary")
def binary(weight: torch.Tensor, generator: torch.Generator) -> None:
    # Same variance as kaiming_normal but every magnitude equal; a zero draw counts as positive.
    signs = torch.where(_draw(weight, generator).normal_(generator=generator) >= 0, 1.0, -1.0)
    _store(weight, signs * kaiming_std(weight))


@model_inits.register("orthogonal")
def orthogonal(weight: torch.Tensor, generator: torch.Generator) -> None:
    """Rows (or columns, whichever are fewer) orthonormal, from the QR of a Gaussian matrix."""
    rows = weight.shape[0]
    cols = weight[0].numel()
    gaussian = torch.empty(max(rows, cols), min(rows, cols), device=generator.device)
    gaussian.normal_(generator=generator)
    q, r = torch.linalg.qr(gaussian.double())
    # Fixing the signs by diag(r) makes Q uniformly (Haar) distributed rather than biased by QR.
    q = q * torch.where(torch.diagonal(r) >= 0, 1.0, -1.0).to(q.dtype)
    if rows < cols:
        q = q.T
    _store(weight, q.float().reshape(weight.shape))


@batchnorm_inits.register("uniform")
def uniform_batchnorm(bn: nn.modules.batchnorm._BatchNorm, generator: torch.Generator) -> None:
    if bn.weight is not None:
        _store(bn.weight, _draw(bn.weight, generator).uniform_(0.0, 1.0, generator=generator))
    if bn.bias is not None:
        nn.init.zeros_(bn.bias)


@batchnorm_inits.register("fixed")
def fixed_batchnorm(bn: nn.modules.batchnorm._BatchNorm, generator: torch.Generator) -> None:
    if bn.weight is not None:
        nn.init.ones_(bn.weight)
    if bn.bias is not None:
        nn.init.zeros_(bn.bias)


def initialize(model: Model, model_hparams: ModelHparams, generator: torch.Generator) -> None:
    """Apply the named initializers to every layer, in module order, consuming only `generator`."""
    weight_init = model_inits.get(model_hparams.model_init)
    bn_init = batchnorm_inits.get(model_hparams.batchnorm_init)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                weight_init(module.weight, generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                bn_init(module, generator)
