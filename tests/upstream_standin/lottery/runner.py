from dataclasses import dataclass

from cli import shared_args
from lottery.desc import LotteryDesc
import models.registry
from platforms.platform import get_platform
import pruning.registry
from pruning.mask import Mask
from pruning.pruned_model import PrunedModel
from training import train


@dataclass
class LotteryRunner:
    replicate: int
    levels: int
    desc: LotteryDesc
    verbose: bool = True
    evaluate_every_epoch: bool = True

    @staticmethod
    def description(): return 'Run a lottery ticket experiment.'

    @staticmethod
    def add_args(parser):
        defaults = shared_args.maybe_get_default_hparams()
        shared_args.JobArgs.add_args(parser)
        parser.add_argument('--levels', required=True, type=int)
        LotteryDesc.add_args(parser, defaults)

    @staticmethod
    def create_from_args(args):
        return LotteryRunner(args.replicate, args.levels, LotteryDesc.create_from_args(args), not args.quiet,
                             not args.evaluate_only_at_end)

    def display_output_location(self):
        print(self.desc.run_path(self.replicate, 0))

    def run(self):
        if self.verbose:
            print(f'Lottery Ticket Experiment (Replicate {self.replicate})\n{self.desc.display}')
            print(f'Output Location: {self.desc.run_path(self.replicate, 0)}')
        self.desc.save(self.desc.run_path(self.replicate, 0))
        location = self.desc.run_path(self.replicate, 0)
        if not models.registry.exists(location, self.desc.train_start_step):
            models.registry.get(self.desc.model_hparams, self.desc.train_outputs).save(location, self.desc.train_start_step)
        for level in range(self.levels + 1):
            self._prune_level(level)
            self._train_level(level)

    def _train_level(self, level):
        location = self.desc.run_path(self.replicate, level)
        if models.registry.exists(location, self.desc.train_end_step):
            return
        model = models.registry.load(self.desc.run_path(self.replicate, 0), self.desc.train_start_step,
                                     self.desc.model_hparams, self.desc.train_outputs)
        pruned = PrunedModel(model, Mask.load(location))
        pruned.save(location, self.desc.train_start_step)
        train.standard_train(pruned, location, self.desc.dataset_hparams, self.desc.training_hparams,
                             start_step=self.desc.train_start_step, verbose=self.verbose,
                             evaluate_every_epoch=self.evaluate_every_epoch)

    def _prune_level(self, level):
        new_location = self.desc.run_path(self.replicate, level)
        if Mask.exists(new_location):
            return
        if level == 0:
            Mask.ones_like(models.registry.get(self.desc.model_hparams)).save(new_location)
            return
        old_location = self.desc.run_path(self.replicate, level - 1)
        model = models.registry.load(old_location, self.desc.train_end_step, self.desc.model_hparams,
                                     self.desc.train_outputs)
        pruning.registry.get(self.desc.pruning_hparams)(model, Mask.load(old_location)).save(new_location)
