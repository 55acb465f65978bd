"""Models: a registry of architecture families, each owning its default hyperparameters.

A family registers a name pattern (e.g. `cifar_resnet_<D>`); resolving a name gives a `ModelSpec`
whose `build` makes the network for a dataset's input shape and class count, and whose `defaults`
are the hyperparameter groups loaded by `--default_hparams=<model name>`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from open_lth_concave.foundations.hparams import HparamError, ModelHparams
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


def frozen_parameter_names(model: Model, hparams: ModelHparams) -> list[str]:
    """The parameters open_lth's freezing flags hold fixed: batch-norm weights and biases
    (--batchnorm_frozen), the output layer (--output_frozen), every other parameter
    (--others_frozen) except those named in --others_frozen_exceptions. One-line errors for names
    that are not parameters and for freezing everything."""
    params = [name for name, _ in model.named_parameters()]
    batchnorm = {f"{prefix}.{name}" if prefix else name
                 for prefix, module in model.named_modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
                 for name, _ in module.named_parameters(recurse=False)}
    output = set(model.output_layer_names)
    exceptions = [n.strip() for n in (hparams.others_frozen_exceptions or "").split(",") if n.strip()]
    if exceptions and not hparams.others_frozen:
        raise HparamError(f"invalid --others_frozen_exceptions {hparams.others_frozen_exceptions}: "
                          "it lists exceptions to --others_frozen, which is not given")
    unknown = [n for n in exceptions if n not in params]
    if unknown:
        raise HparamError(f"invalid --others_frozen_exceptions {','.join(unknown)}: not a parameter of "
                          f"{hparams.model_name}; parameters: {', '.join(params)}")
    frozen = []
    for name in params:
        if name in batchnorm:
            chosen = hparams.batchnorm_frozen
        elif name in output:
            chosen = hparams.output_frozen
        else:
            chosen = hparams.others_frozen and name not in exceptions
        if chosen:
            frozen.append(name)
    if params and len(frozen) == len(params):
        raise HparamError(f"invalid freezing flags for {hparams.model_name}: they freeze every parameter, "
                          "so nothing would train")
    return frozen


def freeze(model: Model, hparams: ModelHparams) -> None:
    """Frozen parameters get requires_grad=False: the optimizers only take parameters that require a
    gradient, so a frozen tensor is never updated (no step, no weight decay) and keeps its initial value."""
    params = dict(model.named_parameters())
    for name in frozen_parameter_names(model, hparams):
        params[name].requires_grad_(False)
