"""Importing this package registers every built-in model family and initializer."""
from __future__ import annotations

import torch

from open_lth_concave.foundations.hparams import ModelHparams
from open_lth_concave.models import cifar_resnet, cifar_vgg, lenet  # noqa: F401  (registration)
from open_lth_concave.models.base import Model, ModelSpec, freeze, frozen_parameter_names, registry
from open_lth_concave.models.initializers import batchnorm_inits, initialize, model_inits


def get_model(model_hparams: ModelHparams, input_shape: tuple[int, int, int], num_classes: int,
              generator: torch.Generator) -> Model:
    """Build the named network for a dataset and initialize it from `generator` alone."""
    spec = registry.get(model_hparams.model_name)
    # torch's layer constructors draw throwaway weights from the global RNG; isolate them so building
    # a model never shifts any other seeded stream (everything is overwritten from `generator` anyway).
    with torch.random.fork_rng(devices=[]):
        model = spec.build(tuple(input_shape), num_classes)
    initialize(model, model_hparams, generator)
    freeze(model, model_hparams)
    return model


def check_model_hparams(model_hparams: ModelHparams, input_shape: tuple[int, int, int], num_classes: int) -> None:
    """One-line errors for model hyperparameters that need the network (e.g. frozen tensor names), found
    on a parameter-free copy built on the meta device, before anything is trained or written."""
    spec = registry.get(model_hparams.model_name)
    with torch.device("meta"):
        model = spec.build(tuple(input_shape), num_classes)
    frozen_parameter_names(model, model_hparams)


__all__ = ["Model", "ModelSpec", "registry", "model_inits", "batchnorm_inits", "initialize", "get_model",
           "check_model_hparams", "freeze", "frozen_parameter_names"]
