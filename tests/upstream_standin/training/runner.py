from dataclasses import dataclass
import os

from cli import shared_args
from foundations import hparams
from foundations.desc import Desc
import models.registry
from platforms.platform import get_platform
from training import train


@dataclass
class TrainingDesc(Desc):
    model_hparams: hparams.ModelHparams
    dataset_hparams: hparams.DatasetHparams
    training_hparams: hparams.TrainingHparams

    @staticmethod
    def name_prefix(): return 'train'

    def run_path(self, replicate):
        return os.path.join(get_platform().root, self.hashname, f'replicate_{replicate}', 'main')


@dataclass
class TrainingRunner:
    replicate: int
    desc: TrainingDesc
    verbose: bool = True

    @staticmethod
    def description(): return 'Train a model.'

    @staticmethod
    def add_args(parser):
        defaults = shared_args.maybe_get_default_hparams()
        shared_args.JobArgs.add_args(parser)
        hparams.DatasetHparams.add_args(parser, defaults.dataset_hparams if defaults else None)
        hparams.ModelHparams.add_args(parser, defaults.model_hparams if defaults else None)
        hparams.TrainingHparams.add_args(parser, defaults.training_hparams if defaults else None)

    @staticmethod
    def create_from_args(args):
        return TrainingRunner(args.replicate, TrainingDesc(hparams.ModelHparams.create_from_args(args),
                                                           hparams.DatasetHparams.create_from_args(args),
                                                           hparams.TrainingHparams.create_from_args(args)),
                              not args.quiet)

    def display_output_location(self):
        print(self.desc.run_path(self.replicate))

    def run(self):
        self.desc.save(self.desc.run_path(self.replicate))
        train.standard_train(models.registry.get(self.desc.model_hparams), self.desc.run_path(self.replicate),
                             self.desc.dataset_hparams, self.desc.training_hparams, verbose=self.verbose)
