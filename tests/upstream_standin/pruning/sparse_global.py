import dataclasses

import numpy as np
import torch

from foundations import hparams
from pruning import base
from pruning.mask import Mask


@dataclasses.dataclass
class PruningHparams(hparams.PruningHparams):
    pruning_fraction: float = 0.2
    pruning_layers_to_ignore: str = None
    _name: str = 'Sparse Global Pruning Hyperparameters'


class Strategy(base.Strategy):
    @staticmethod
    def get_pruning_hparams():
        return PruningHparams

    @staticmethod
    def prune(pruning_hparams, trained_model, current_mask=None):
        """The contract's rule: count over all surviving mask entries, threshold at the sorted index."""
        current = Mask.ones_like(trained_model) if current_mask is None else current_mask
        count = int(np.ceil(pruning_hparams.pruning_fraction * sum(int(v.sum()) for v in current.values())))
        names = set(trained_model.prunable_layer_names) - set((pruning_hparams.pruning_layers_to_ignore or '').split(','))
        state = trained_model.state_dict()
        alive = torch.cat([state[n][current[n] == 1].abs().flatten() for n in current if n in names])
        threshold = alive.sort().values[count]
        return Mask({n: (torch.where(state[n].abs() > threshold, current[n], torch.zeros_like(current[n]))
                         if n in names else current[n]) for n in current})
