import json

import torch

from foundations import paths
from platforms.platform import get_platform


class Mask(dict):
    """Tensor name -> 0/1 tensor."""

    def __setitem__(self, key, value):
        value = torch.as_tensor(value)
        if ((value != 0) & (value != 1)).any():
            raise ValueError('All entries must be 0 or 1.')
        super().__setitem__(key, value)

    def __init__(self, other=None):
        super().__init__()
        for k, v in (other or {}).items():
            self[k] = v

    @staticmethod
    def ones_like(model):
        return Mask({n: torch.ones_like(model.state_dict()[n]) for n in model.prunable_layer_names})

    def save(self, output_location):
        get_platform().makedirs(output_location)
        get_platform().save_model({k: v.cpu().int() for k, v in self.items()}, paths.mask(output_location))
        total = float(sum(v.numel() for v in self.values()))
        alive = float(sum(int(v.sum()) for v in self.values()))
        with open(paths.sparsity_report(output_location), 'w') as fp:
            json.dump({'total': total, 'unpruned': alive}, fp)

    @staticmethod
    def load(output_location):
        return Mask(get_platform().load_model(paths.mask(output_location)))

    @staticmethod
    def exists(output_location):
        return get_platform().exists(paths.mask(output_location))
