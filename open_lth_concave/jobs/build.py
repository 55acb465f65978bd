"""A subcommand's command line made into a job: its experiment description, runner(s), results root and platform.

Every check of the flags happens here, before anything is written: a bad value is one HparamError/UsageError
line. Building a job sets up the platform it runs on (threads, device, torchrun), so build the jobs you run.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from open_lth_concave.foundations.hparams import (DatasetHparams, HparamError, ModelHparams, Range, TrainingHparams,
                                                  range_error)
from open_lth_concave.foundations.paths import results_root
from open_lth_concave.jobs.flags import ParsedFirst, flags_without_effect, parser, strategy_hparams_cls
from open_lth_concave.platform import Platform

# the job flags' ranges (integers; argparse has parsed them), checked with the hyperparameters' one message
REPLICATE = Range.parse(">= 1")
REPLICATES_TOGETHER = Range.parse("[1, 1024]")
LEVELS = Range.parse("[0, 1000]")


# ---- descriptions --------------------------------------------------------------------------------------
def rewinding_as_pretraining(desc, rewinding_steps: str):
    """Rewinding to step k is a pretraining run on the same data and schedule, k steps long (open_lth's
    rule, so the experiment keeps open_lth's name); the main run then resumes at its end."""
    return replace(desc, pretrain_dataset_hparams=desc.dataset_hparams,
                   pretrain_training_hparams=replace(desc.training_hparams, training_steps=rewinding_steps))


def _lottery_pretraining(desc, args: argparse.Namespace, d: dict):
    """--pretrain (its own data and schedule) or --rewinding_steps (the main ones), or neither."""
    from open_lth_concave.foundations.step import Step
    rewinding = getattr(args, "rewinding_steps", None) or d.get("job", {}).get("rewinding_steps")
    if getattr(args, "pretrain", False):
        if rewinding:
            raise HparamError("--rewinding_steps and --pretrain cannot be used together")
        pretrain_dataset = DatasetHparams.from_args(args, d.get("pretrain_dataset", d.get("dataset")), prefix="pretrain_")
        pretrain_training = TrainingHparams.from_args(args, d.get("pretrain_training", d.get("training")), prefix="pretrain_")
        if not Step.is_zero_str(pretrain_training.training_steps, flag="pretrain_training_steps"):
            return replace(desc, pretrain_dataset_hparams=pretrain_dataset, pretrain_training_hparams=pretrain_training)
        return desc   # zero pretraining steps = no pretraining (open_lth's rule: same experiment, same name)
    if rewinding and not Step.is_zero_str(rewinding, flag="rewinding_steps"):  # 0ep/0it: no rewinding
        return rewinding_as_pretraining(desc, rewinding)
    return desc


def check_names(desc, extra_groups=()) -> None:
    """Every registered name the experiment's hyperparameters hold (training strategies, the pruning strategy,
    the model and its initializers, datasets; pretraining's and a branch's `extra_groups` too), looked up once
    the plug-ins have loaded: the hyperparameter classes on the ground floor know no registry. The one place
    names are resolved; an unknown one fails with the valid names."""
    from open_lth_concave.datasets import registry as datasets
    from open_lth_concave.models import registry as models
    from open_lth_concave.models.initializers import batchnorm_inits, model_inits
    from open_lth_concave.training.strategy import registry as training_strategies
    groups = [getattr(desc, name, None) for name in ("dataset_hparams", "model_hparams", "training_hparams",
                                                     "pruning_hparams", "pretrain_dataset_hparams",
                                                     "pretrain_training_hparams")]
    for group in [g for g in groups if g is not None] + list(extra_groups):
        if isinstance(group, TrainingHparams):
            training_strategies.get(group.training_strategy)
        elif isinstance(group, DatasetHparams):
            datasets.get(group.dataset_name)
        elif isinstance(group, ModelHparams):
            models.get(group.model_name)
            model_inits.get(group.model_init)
            batchnorm_inits.get(group.batchnorm_init)
        elif hasattr(group, "pruning_strategy"):
            strategy_hparams_cls(group.pruning_strategy)


def desc_from_args(command: str, args: argparse.Namespace, first: ParsedFirst):
    """The experiment the parsed flags describe: a TrainingDesc (`train`) or a LotteryDesc (lottery jobs)."""
    from open_lth_concave.foundations.desc import LotteryDesc, TrainingDesc
    d = first.defaults
    dataset = DatasetHparams.from_args(args, d.get("dataset"))
    model = ModelHparams.from_args(args, d.get("model"))
    training = TrainingHparams.from_args(args, d.get("training"))
    if command == "train":
        check_names(TrainingDesc(dataset, model, training))
        strategy_cls = first.training_strategy_cls
        strategy = strategy_cls.from_args(args, d.get("training_strategy")) if strategy_cls is not None else None
        for name, why in flags_without_effect(strategy).items():   # it would only change the experiment's name
            if getattr(args, name, None) is not None:
                raise HparamError(f"invalid --{name} with --training_strategy {training.training_strategy}: {why}, "
                                  "so it would change nothing but the experiment's name")
        return TrainingDesc(dataset, model, training, strategy)
    pruning = first.pruning_cls.from_args(args, d.get("pruning"))
    check_names(LotteryDesc(dataset, model, training, pruning))
    for name, why in flags_without_effect(pruning).items():   # it would only change the experiment's name
        if getattr(args, name, None) is not None:
            raise HparamError(f"invalid --{name} with --pruning_strategy {pruning.pruning_strategy}: {why}, so it "
                              "would change nothing but the experiment's name")
    desc = _lottery_pretraining(LotteryDesc(dataset, model, training, pruning), args, d)
    check_names(None, [g for g in (desc.pretrain_dataset_hparams, desc.pretrain_training_hparams) if g is not None])
    desc.check_training_strategies(command)
    return desc


def check_model_and_dataset(desc) -> None:
    """The model fits the dataset and its hyperparameters (e.g. frozen tensor names), and the tensors named in
    --pruning_layers_to_ignore exist, checked before anything is written (names: `check_names`, already done)."""
    from open_lth_concave.datasets import registry as datasets
    from open_lth_concave.models import check_model_hparams
    from open_lth_concave.models import registry as models
    spec = datasets.get(desc.dataset_hparams.dataset_name)
    check_model_hparams(desc.model_hparams, spec.image_shape, spec.num_classes)   # e.g. frozen tensor names
    ignored = getattr(getattr(desc, "pruning_hparams", None), "pruning_layers_to_ignore", None)
    if ignored:   # checked here, not at the first pruning after level 0 has trained
        import torch

        from open_lth_concave.pruning.strategy import layers_to_ignore
        with torch.device("meta"):
            model = models.get(desc.model_hparams.model_name).build(tuple(spec.image_shape), spec.num_classes)
        prunable = list(model.prunable_layer_names)
        unknown = sorted(layers_to_ignore(ignored) - set(prunable))
        if unknown:
            raise HparamError(f"invalid --pruning_layers_to_ignore {','.join(unknown)}: model "
                              f"{desc.model_hparams.model_name} has no such prunable tensor; prunable tensors: "
                              f"{', '.join(prunable)}")


def _branch(argv: list[str]):
    """`lottery_branch NAME ...`: the registered branch NAME (an unknown name fails with the valid ones)."""
    from open_lth_concave.branches import registry as branches
    if not argv or argv[0].startswith("-"):
        raise HparamError(f"missing branch name: open_lth lottery_branch NAME; branches: {', '.join(branches.list())}")
    return branches.get(argv[0])


def _parse(command: str, argv: list[str]) -> tuple[argparse.Namespace, ParsedFirst, Any]:
    branch = _branch(argv) if command == "lottery_branch" else None
    if branch is not None:
        argv = argv[1:]
    p, first = parser(command, argv, branch)
    args = p.parse_args(argv)
    desc = desc_from_args(command, args, first)
    check_model_and_dataset(desc)
    return args, first, desc


def describe(command: str, argv: list[str]):
    """The experiment `open_lth <command> argv` would run (its name: `.hashname`), every flag checked;
    nothing is written and no platform is set up."""
    return _parse(command, argv)[2]


# ---- where and on what a job runs ------------------------------------------------------------------------
def _choose_threads(platform: Platform, desc) -> None:
    """--threads=0: the thread count from the model's work per step, and --memory_format=auto's choice (the
    model built on the meta device, no weights)."""
    import torch

    from open_lth_concave.datasets import registry as datasets
    from open_lth_concave.models import registry as models
    spec = datasets.get(desc.dataset_hparams.dataset_name)
    with torch.device("meta"):
        model = models.get(desc.model_hparams.model_name).build(tuple(spec.image_shape), spec.num_classes)
    platform.choose_threads(model, tuple(spec.image_shape), desc.dataset_hparams.batch_size)
    platform.choose_memory_format(model)


def _root_and_platform(args: argparse.Namespace, desc) -> tuple[Path, Platform]:
    """The results root (checked writable before any work) and the platform, set up for this process."""
    if args.replicate not in REPLICATE:
        raise range_error("replicate", args.replicate, REPLICATE)
    if getattr(args, "tensorboard", False):
        from open_lth_concave.report.tensorboard import check_available
        check_available()
    root = Path(args.root).expanduser() if args.root else results_root()
    from open_lth_concave.foundations.io import check_writable_folder
    check_writable_folder(root, "--root" if args.root else "results root ($OPEN_LTH_ROOT)")  # before any work
    platform = Platform.from_args(args)
    from open_lth_concave.foundations import distributed
    distributed.init_from_environment(platform.torch_device.type)
    if not distributed.is_writer():  # under torchrun only rank 0 speaks
        sys.stdout = open(os.devnull, "w")
    platform.apply()
    _choose_threads(platform, desc)
    return root, platform


# ---- jobs ----------------------------------------------------------------------------------------------
@dataclass
class Job:
    """A command line made into work: the parsed flags, the experiment, where its results go, what it runs on."""
    command: str
    args: argparse.Namespace
    desc: Any
    root: Path
    platform: Platform

    @property
    def display_output_location(self) -> bool:
        return bool(self.args.display_output_location)

    def output_dirs(self) -> list[Path]:
        raise NotImplementedError

    def tensorboard_folders(self) -> list[Path]:
        """The replicate folders whose runs --tensorboard turns into event files."""
        return []

    def write_tensorboard(self) -> list[Path]:
        """--tensorboard: event files for each run of this job; returns where they went."""
        from open_lth_concave.report.tensorboard import write_events
        return [write_events(folder) for folder in self.tensorboard_folders()]


@dataclass
class TrainJob(Job):
    """`train`: one dense network per replicate (`--replicates_together` trains several at once)."""
    replicates: list[int] = field(default_factory=list)
    runners: list = field(default_factory=list)    # one TrainingRunner per replicate

    def output_dirs(self) -> list[Path]:
        return [runner.output_dir for runner in self.runners]

    def tensorboard_folders(self) -> list[Path]:
        return [runner.output_dir.parent for runner in self.runners]

    def run(self) -> dict[int, dict]:
        """Trains every replicate; returns each one's final metrics."""
        if len(self.replicates) == 1:
            return {self.replicates[0]: self.runners[0].run()}
        from open_lth_concave.training.runner import train_replicates_together
        return train_replicates_together(self.desc, self.root, self.replicates, self.platform, self.args.quiet)


@dataclass
class LotteryJob(Job):
    """`lottery`: one replicate's levels (`runner`, a LotteryRunner)."""
    runner: Any = None

    def output_dirs(self) -> list[Path]:
        return [self.runner.replicate_dir]

    def tensorboard_folders(self) -> list[Path]:
        return [self.runner.replicate_dir]

    def run(self) -> list[dict]:
        return self.runner.run()


@dataclass
class BranchJob(Job):
    """`lottery_branch NAME`: a branch on some levels of a finished trunk (`runner`, a BranchRunner, set up)."""
    runner: Any = None

    def output_dirs(self) -> list[Path]:
        return list(self.runner.output_dirs.values())

    def run(self) -> None:
        self.runner.run()


def _train_job(argv: list[str]) -> TrainJob:
    from open_lth_concave.training.runner import TrainingRunner
    args, _, desc = _parse("train", argv)
    if args.replicates_together not in REPLICATES_TOGETHER:
        raise range_error("replicates_together", args.replicates_together, REPLICATES_TOGETHER)
    root, platform = _root_and_platform(args, desc)
    replicates = list(range(args.replicate, args.replicate + args.replicates_together))
    runners = [TrainingRunner(desc, root, r, platform, args.quiet, args.evaluate_only_at_end) for r in replicates]
    return TrainJob("train", args, desc, root, platform, replicates, runners)


def _lottery_job(argv: list[str]) -> LotteryJob:
    from open_lth_concave.lottery.runner import LotteryRunner
    args, first, desc = _parse("lottery", argv)
    levels = args.levels if args.levels is not None else first.defaults.get("job", {}).get("levels")
    if levels is None:
        raise HparamError("missing required flag --levels (pruning levels after the dense level 0)")
    if levels not in LEVELS:
        raise range_error("levels", levels, LEVELS)
    root, platform = _root_and_platform(args, desc)
    runner = LotteryRunner(desc, levels, root, args.replicate, platform, args.quiet, args.evaluate_only_at_end,
                           args.train_final_ticket_only)
    return LotteryJob("lottery", args, desc, root, platform, runner)


def _branch_job(argv: list[str]) -> BranchJob:
    from open_lth_concave.branches.runner import BranchRunner
    from open_lth_concave.foundations.desc import require_standard_training
    from open_lth_concave.lottery.runner import LotteryRunner
    args, first, desc = _parse("lottery_branch", argv)
    branch = first.branch
    branch_args = branch.hparams_cls.from_args(args)
    extra_groups = {}
    for prefix, (cls, source) in branch.extra_groups.items():
        trunk_group = getattr(desc, source).to_dict()
        extra_groups[prefix] = cls.from_args(args, trunk_group, prefix=prefix.split("_")[0] + "_")
        check_names(None, [extra_groups[prefix]])
        if isinstance(extra_groups[prefix], TrainingHparams):
            require_standard_training(extra_groups[prefix], prefix.split("_")[0] + "_", f"lottery_branch {branch.name}")
    if args.levels is None:
        raise HparamError("missing required flag --levels (trunk levels, e.g. 0,2-4)")
    root, platform = _root_and_platform(args, desc)
    trunk = LotteryRunner(desc, 0, root, args.replicate, platform, args.quiet, args.evaluate_only_at_end)
    runner = BranchRunner.on_trunk(trunk, branch, branch_args, extra_groups, args.levels, args.trunk_levels)
    return BranchJob("lottery_branch", args, desc, root, platform, runner)


def build(command: str, argv: list[str]) -> Job:
    """`open_lth <command> argv` as a job, every flag checked and the platform set up; nothing written yet.
    Commands: train, lottery, lottery_branch (argv[0] is the branch's name)."""
    builders = {"train": _train_job, "lottery": _lottery_job, "lottery_branch": _branch_job}
    if command not in builders:
        raise ValueError(f"no job for subcommand {command!r}; jobs: {', '.join(builders)}")
    return builders[command](argv)
