import abc

import torch

from foundations import paths
from platforms.platform import get_platform


class Model(abc.ABC, torch.nn.Module):
    """Base of every model: prunable tensors, output layer, loss, saving."""

    @staticmethod
    @abc.abstractmethod
    def is_valid_model_name(model_name): pass

    @staticmethod
    @abc.abstractmethod
    def get_model_from_name(model_name, initializer, outputs=None): pass

    @staticmethod
    @abc.abstractmethod
    def default_hparams(): pass

    @property
    @abc.abstractmethod
    def output_layer_names(self): pass

    @property
    @abc.abstractmethod
    def loss_criterion(self): pass

    @property
    def prunable_layer_names(self):
        return [n + '.weight' for n, m in self.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]

    def save(self, save_location, save_step):
        get_platform().makedirs(save_location)
        get_platform().save_model(self.state_dict(), paths.model(save_location, save_step))


class DistributedDataParallel(Model, torch.nn.parallel.DistributedDataParallel):
    """Declared as open_lth declares it (its bases are what the MRO edit is about); unused here."""
