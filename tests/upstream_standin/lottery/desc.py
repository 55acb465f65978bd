import argparse
import copy
from dataclasses import dataclass
import os

from cli import arg_utils
from datasets import registry as datasets_registry
from foundations import hparams
from foundations.desc import Desc
from foundations.step import Step
from platforms.platform import get_platform
import pruning.registry


@dataclass
class LotteryDesc(Desc):
    model_hparams: hparams.ModelHparams
    dataset_hparams: hparams.DatasetHparams
    training_hparams: hparams.TrainingHparams
    pruning_hparams: hparams.PruningHparams
    pretrain_dataset_hparams: hparams.DatasetHparams = None
    pretrain_training_hparams: hparams.TrainingHparams = None

    @staticmethod
    def name_prefix(): return 'lottery'

    @staticmethod
    def add_args(parser, defaults=None):
        parser.add_argument('--rewinding_steps', type=str, help='Rewind to this step.')
        pruning_strategy = arg_utils.maybe_get_arg('pruning_strategy')
        if defaults and not pruning_strategy:
            pruning_strategy = defaults.pruning_hparams.pruning_strategy
        if pruning_strategy:
            pruning_hparams = pruning.registry.get_pruning_hparams(pruning_strategy)
            if defaults and defaults.pruning_hparams.pruning_strategy == pruning_strategy:
                def_ph = defaults.pruning_hparams
        else:
            pruning_hparams = hparams.PruningHparams
            def_ph = None
        hparams.DatasetHparams.add_args(parser, defaults=defaults.dataset_hparams if defaults else None)
        hparams.ModelHparams.add_args(parser, defaults=defaults.model_hparams if defaults else None)
        hparams.TrainingHparams.add_args(parser, defaults=defaults.training_hparams if defaults else None)
        pruning_hparams.add_args(parser, defaults=def_ph if defaults else None)

    @staticmethod
    def create_from_args(args):
        desc = LotteryDesc(hparams.ModelHparams.create_from_args(args), hparams.DatasetHparams.create_from_args(args),
                           hparams.TrainingHparams.create_from_args(args),
                           pruning.registry.get_pruning_hparams(args.pruning_strategy).create_from_args(args))
        if args.rewinding_steps and not Step.str_is_zero(args.rewinding_steps):
            desc.pretrain_dataset_hparams = copy.deepcopy(desc.dataset_hparams)
            desc.pretrain_training_hparams = copy.deepcopy(desc.training_hparams)
            desc.pretrain_training_hparams.training_steps = args.rewinding_steps
        return desc

    def str_to_step(self, s):
        return Step.from_str(s, datasets_registry.iterations_per_epoch(self.dataset_hparams))

    train_start_step = property(lambda self: self.str_to_step(
        self.pretrain_training_hparams.training_steps if self.pretrain_training_hparams else '0it'))
    train_end_step = property(lambda self: self.str_to_step(self.training_hparams.training_steps))
    train_outputs = property(lambda self: datasets_registry.num_classes(self.dataset_hparams))

    def run_path(self, replicate, pruning_level, experiment='main'):
        return os.path.join(get_platform().root, self.hashname, f'replicate_{replicate}', f'level_{pruning_level}', experiment)

    @property
    def display(self):
        return '\n'.join(h.display for h in (self.dataset_hparams, self.model_hparams, self.training_hparams,
                                             self.pruning_hparams))
