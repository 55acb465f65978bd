import copy
from functools import partial

from foundations.hparams import PruningHparams
from pruning import sparse_global

registered_strategies = {'sparse_global': sparse_global.Strategy}


def get(pruning_hparams: PruningHparams):
    return partial(registered_strategies[pruning_hparams.pruning_strategy].prune, copy.deepcopy(pruning_hparams))


def get_pruning_hparams(pruning_strategy):
    if pruning_strategy not in registered_strategies:
        raise ValueError(f'Pruning strategy {pruning_strategy} not found.')
    return registered_strategies[pruning_strategy].get_pruning_hparams()
