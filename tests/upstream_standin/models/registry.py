import torch

from foundations import paths
from models import mnist_lenet
from platforms.platform import get_platform

registered_models = [mnist_lenet.Model]


def _init(module):
    if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
        torch.nn.init.kaiming_normal_(module.weight)


def get(model_hparams, outputs=None):
    for cls in registered_models:
        if cls.is_valid_model_name(model_hparams.model_name):
            return cls.get_model_from_name(model_hparams.model_name, _init, outputs)
    raise ValueError(f'No such model: {model_hparams.model_name}')


def load(save_location, save_step, model_hparams, outputs=None):
    model = get(model_hparams, outputs)
    model.load_state_dict(get_platform().load_model(paths.model(save_location, save_step)))
    return model


def exists(save_location, save_step):
    return get_platform().exists(paths.model(save_location, save_step))


def get_default_hparams(model_name):
    for cls in registered_models:
        if cls.is_valid_model_name(model_name):
            desc = cls.default_hparams()
            desc.model_hparams.model_name = model_name
            return desc
    raise ValueError(f'No such model: {model_name}')
