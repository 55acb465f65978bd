"""`open_lth`: the command line. Flags come from the hyperparameter dataclasses (see foundations/hparams).

Parsing is two-phase: a first pass reads the flags that decide which other flags exist
(`--default_hparams`, `--pruning_strategy`, `--training_strategy`, `--pretrain`, `--rewinding_steps`);
then the full parser is built with every group's flags, showing the preset's defaults in `--help`.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from open_lth_concave.foundations.errors import UserError
from open_lth_concave.foundations.hparams import (DatasetHparams, HparamError, ModelHparams, TrainingHparams)
from open_lth_concave.foundations.paths import results_root
from open_lth_concave.platform import Platform

SUBCOMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {}


def subcommand(name: str, help_text: str):
    def decorator(fn: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        SUBCOMMANDS[name] = (help_text, fn)
        return fn
    return decorator


def one_line(error: BaseException) -> str:
    """An error's message as one line (a message is written as one line; this guards the promise)."""
    return " ".join(str(error).split())


class UsageError(UserError):
    """A bad command line: reported as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    unknown_flag_hint: Optional[Callable[[str], Optional[str]]] = None   # flag -> where it does exist

    def error(self, message: str) -> None:  # argparse prints usage + message; we print one line
        if message.startswith("unrecognized arguments:") and self.unknown_flag_hint is not None:
            hints = [self.unknown_flag_hint(token.split("=", 1)[0]) for token in message.split(":", 1)[1].split()
                     if token.startswith("--")]
            hints = [h for h in hints if h]
            if hints:
                message += " (" + "; ".join(hints) + ")"
        raise UsageError(message)


def registered_names_epilog() -> str:
    """What `--help` lists after the flags: the names the registries accept, patterns included."""
    from open_lth_concave.datasets import registry as datasets
    from open_lth_concave.models import registry as models
    from open_lth_concave.presets import list_presets
    from open_lth_concave.pruning.strategy import registry as strategies
    from open_lth_concave.training.strategy import registry as training_strategies
    return "\n".join([
        f"pruning strategies: {', '.join(strategies.names())}",
        f"training strategies: {', '.join(training_strategies.names())}",
        f"models: {', '.join(models.names())}",
        f"datasets: {', '.join(datasets.names())}",
        f"presets (--default_hparams): {', '.join(list_presets())}, a .toml path, or a model name"])


def strategy_flags(strategy: str) -> list[str]:
    """The flags of pruning strategy `strategy`'s own hyperparameters (its dataclass), --pruning_strategy aside."""
    from dataclasses import fields
    return [f"--{f.name}" for f in fields(_strategy_pruning_cls(strategy)) if f.name != "pruning_strategy"]


def flags_without_effect(pruning) -> dict[str, str]:
    """A strategy's hyperparameters may name fields that do nothing under their other values (hook:
    `flags_without_effect()` on the hyperparameter dataclass)."""
    hook = getattr(pruning, "flags_without_effect", None)
    return hook() if hook is not None else {}


def other_strategies_hint(strategy: str) -> Callable[[str], Optional[str]]:
    """For an unknown flag under --pruning_strategy `strategy`: which other strategies have it."""
    def hint(flag: str) -> Optional[str]:
        from open_lth_concave.pruning.strategy import registry
        owners = [name for name in registry.list() if name != strategy and flag in strategy_flags(name)]
        if not owners:
            return None
        return f"{flag} exists for --pruning_strategy {', '.join(owners)}, not for {strategy}"
    return hint


def loop_errors():
    """Errors found while running (not bad input): exit 1 for these, 143 for a stop by signal."""
    from open_lth_concave.pruning.strategy import PruningError
    from open_lth_concave.training.loop import Interrupted, TrainingDiverged
    return (TrainingDiverged, PruningError), Interrupted


# ---- building jobs from flags ------------------------------------------------------------------------
def _pre_parse(argv: list[str]) -> argparse.Namespace:
    pre = OneLineParser(add_help=False)
    pre.add_argument("--default_hparams", type=str, default=None)
    pre.add_argument("--pruning_strategy", type=str, default=None)
    pre.add_argument("--training_strategy", type=str, default=None)
    pre.add_argument("--pretrain", action="store_true")
    pre.add_argument("--rewinding_steps", type=str, default=None)
    pre.add_argument("-h", "--help", action="store_true")
    known, _ = pre.parse_known_args(argv)
    return known


def _defaults(name: Optional[str]) -> dict[str, dict[str, Any]]:
    if not name:
        return {}
    from open_lth_concave.presets import load_defaults
    return load_defaults(name)


def add_job_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Job", "How this job runs; none of these enter the experiment name.")
    group.add_argument("--default_hparams", type=str, default=None,
                       help="A model name or preset whose hyperparameters are the defaults (flags override them).")
    group.add_argument("--replicate", type=int, default=1, help="Replicate number, >= 1; also the seed. (default: 1)")
    group.add_argument("--quiet", action="store_true", help="Do not print per-evaluation lines.")
    group.add_argument("--evaluate_only_at_end", action="store_true", help="Evaluate only at the start and end steps.")
    group.add_argument("--display_output_location", action="store_true", help="Print the output folder and exit.")
    group.add_argument("--root", type=str, default=None,
                       help="Results root (default: $OPEN_LTH_ROOT, else ~/open_lth_data).")
    group.add_argument("--tensorboard", action="store_true",
                       help="After the job, write TensorBoard event files into <replicate folder>/tensorboard "
                            "(needs the optional tensorboard package).")
    Platform.add_args(parser)


def _strategy_pruning_cls(name: str):
    from open_lth_concave.pruning.strategy import registry
    return registry.get(name).hparams_cls


def _add_training_strategy_args(parser: argparse.ArgumentParser, name: str, defaults: Optional[dict]):
    """The flags of training strategy `name`'s own hyperparameters; returns their class (None: it has none)."""
    from dataclasses import fields

    from open_lth_concave.training.strategy import registry as training_strategies
    hparams_cls = training_strategies.get(name).hparams_cls
    if not fields(hparams_cls):
        return None
    try:
        hparams_cls.add_args(parser, defaults, title=f"Training Strategy Hyperparameters ({name})")
    except argparse.ArgumentError as e:
        raise HparamError(f"training strategy {name!r} cannot be used with `train`: its hyperparameters clash "
                          f"with other flags ({e})") from None
    return hparams_cls


def build_parser(command: str, argv: list[str], extra: Optional[Callable[[argparse.ArgumentParser], None]] = None
                 ) -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    """The full parser for train/lottery, plus what the first pass decided (defaults, classes)."""
    known = _pre_parse(argv)
    defaults = _defaults(known.default_hparams)
    parser = OneLineParser(prog=f"open_lth {command}", description=SUBCOMMANDS[command][0],
                           epilog=registered_names_epilog() if known.help else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_job_flags(parser)
    DatasetHparams.add_args(parser, defaults.get("dataset"))
    ModelHparams.add_args(parser, defaults.get("model"))
    TrainingHparams.add_args(parser, defaults.get("training"))
    info: dict[str, Any] = {"defaults": defaults}
    if command == "train":   # the training strategy's own flags (lottery jobs train with `standard`)
        name = known.training_strategy or defaults.get("training", {}).get("training_strategy") or "standard"
        info["training_strategy_cls"] = _add_training_strategy_args(parser, name, defaults.get("training_strategy"))
    if command == "lottery" or command == "lottery_branch":
        strategy = known.pruning_strategy or defaults.get("pruning", {}).get("pruning_strategy")
        pruning_cls = _strategy_pruning_cls(strategy) if strategy else None
        if pruning_cls is None:
            from open_lth_concave.foundations.hparams import PruningHparams
            pruning_cls = PruningHparams
        pruning_cls.add_args(parser, defaults.get("pruning"))
        info["pruning_cls"] = pruning_cls
        parser.unknown_flag_hint = other_strategies_hint(strategy or "the default strategy")
        if command == "lottery":
            lot = parser.add_argument_group("Lottery")
            lot.add_argument("--levels", type=int, default=None,
                             help="Pruning levels after the dense level 0 (required: int >= 0).")
            lot.add_argument("--rewinding_steps", type=str, default=None,
                             help="Rewind surviving weights to this step instead of initialization (optional: step).")
            lot.add_argument("--pretrain", action="store_true",
                             help="Pretrain before level 0; adds --pretrain_* dataset and training flags.")
            lot.add_argument("--train_final_ticket_only", action="store_true",
                             help="Run every level's mask search but train only the last level's ticket "
                                  "(the paper's Table III protocol; strategies that need trained tickets refuse it).")
            if known.pretrain:
                DatasetHparams.add_args(parser, defaults.get("pretrain_dataset", defaults.get("dataset")),
                                        prefix="pretrain_", title="Pretraining Dataset Hyperparameters")
                TrainingHparams.add_args(parser, defaults.get("pretrain_training", defaults.get("training")),
                                         prefix="pretrain_", title="Pretraining Training Hyperparameters")
            info["pretrain"] = known.pretrain
    if extra:
        extra(parser)
    return parser, info


def desc_from_args(command: str, args: argparse.Namespace, info: dict[str, Any]):
    from dataclasses import replace
    from open_lth_concave.lottery.desc import LotteryDesc, TrainingDesc
    d = info["defaults"]
    dataset = DatasetHparams.from_args(args, d.get("dataset"))
    model = ModelHparams.from_args(args, d.get("model"))
    training = TrainingHparams.from_args(args, d.get("training"))
    if command == "train":
        strategy_cls = info.get("training_strategy_cls")
        strategy = strategy_cls.from_args(args, d.get("training_strategy")) if strategy_cls is not None else None
        return TrainingDesc(dataset, model, training, strategy)
    pruning = info["pruning_cls"].from_args(args, d.get("pruning"))
    _strategy_pruning_cls(pruning.pruning_strategy)  # unknown names fail here, with the list
    for name, why in flags_without_effect(pruning).items():   # it would only change the experiment's name
        if getattr(args, name, None) is not None:
            raise HparamError(f"invalid --{name} with --pruning_strategy {pruning.pruning_strategy}: {why}, so it "
                              "would change nothing but the experiment's name")
    desc = LotteryDesc(dataset, model, training, pruning)
    rewinding = getattr(args, "rewinding_steps", None) or d.get("job", {}).get("rewinding_steps")
    from open_lth_concave.foundations.step import Step
    if getattr(args, "pretrain", False):
        if rewinding:
            raise HparamError("--rewinding_steps and --pretrain cannot be used together")
        pretrain_dataset = DatasetHparams.from_args(args, d.get("pretrain_dataset", d.get("dataset")), prefix="pretrain_")
        pretrain_training = TrainingHparams.from_args(args, d.get("pretrain_training", d.get("training")), prefix="pretrain_")
        if not Step.is_zero_str(pretrain_training.training_steps, flag="pretrain_training_steps"):
            desc.pretrain_dataset_hparams = pretrain_dataset
            desc.pretrain_training_hparams = pretrain_training
        # zero pretraining steps = no pretraining (open_lth's rule: same experiment, same name)
    elif rewinding and not Step.is_zero_str(rewinding, flag="rewinding_steps"):  # 0ep/0it: no rewinding
        desc.pretrain_dataset_hparams = dataset
        desc.pretrain_training_hparams = replace(training, training_steps=rewinding)
    desc.check_training_strategies(command)
    return desc


def _check_model_and_dataset(desc) -> None:
    """Unknown model or dataset names fail before anything is written."""
    from open_lth_concave.datasets import registry as datasets
    from open_lth_concave.models import registry as models
    from open_lth_concave.models.initializers import batchnorm_inits, model_inits
    models.get(desc.model_hparams.model_name)
    model_inits.get(desc.model_hparams.model_init)
    batchnorm_inits.get(desc.model_hparams.batchnorm_init)
    datasets.get(desc.dataset_hparams.dataset_name)
    if getattr(desc, "pretrain_dataset_hparams", None) is not None:
        datasets.get(desc.pretrain_dataset_hparams.dataset_name)
    from open_lth_concave.models import check_model_hparams
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


def _choose_threads(platform: Platform, desc) -> None:
    """--threads=0: the thread count from the model's work per step (built on the meta device, no weights)."""
    import torch

    from open_lth_concave.datasets import registry as datasets
    from open_lth_concave.models import registry as models
    spec = datasets.get(desc.dataset_hparams.dataset_name)
    with torch.device("meta"):
        model = models.get(desc.model_hparams.model_name).build(tuple(spec.image_shape), spec.num_classes)
    platform.choose_threads(model, tuple(spec.image_shape), desc.dataset_hparams.batch_size)


def job_common(args: argparse.Namespace, desc=None) -> tuple[Path, Platform]:
    if args.replicate < 1:
        raise HparamError(f"invalid --replicate {args.replicate}: must be an integer >= 1")
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
    if desc is not None:
        _choose_threads(platform, desc)
    return root, platform


# ---- subcommands -------------------------------------------------------------------------------------
@subcommand("train", "Train a dense network.")
def cmd_train(argv: list[str]) -> int:
    from open_lth_concave.training.runner import TrainingRunner
    parser, info = build_parser("train", argv, extra=_add_together_flag)
    args = parser.parse_args(argv)
    desc = desc_from_args("train", args, info)
    _check_model_and_dataset(desc)
    if args.replicates_together < 1 or args.replicates_together > 1024:
        raise HparamError(f"invalid --replicates_together {args.replicates_together}: must be an integer in 1..1024")
    root, platform = job_common(args, desc)
    replicates = list(range(args.replicate, args.replicate + args.replicates_together))
    runners = [TrainingRunner(desc, root, r, platform, args.quiet, args.evaluate_only_at_end) for r in replicates]
    if args.display_output_location:
        for runner in runners:
            print(runner.output_dir)
        return 0
    if len(replicates) == 1:
        metrics = runners[0].run()
        print(f"Final test accuracy {100 * metrics['test_accuracy']:.2f}%")
    else:
        from open_lth_concave.training.runner import train_replicates_together
        for replicate, metrics in train_replicates_together(desc, root, replicates, platform, args.quiet).items():
            print(f"Replicate {replicate}: final test accuracy {100 * metrics['test_accuracy']:.2f}%")
    if args.tensorboard:
        from open_lth_concave.report.tensorboard import write_events
        for runner in runners:
            print(f"TensorBoard events written to {write_events(runner.output_dir.parent)}")
    return 0


def _add_together_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicates_together", type=int, default=1,
                        help="Train this many replicates (from --replicate on) at once in one process, parameters "
                             "stacked with torch.func.vmap; standard strategy only; each lands in its own "
                             "replicate folder. (default: 1)")


def make_lottery_runner(argv: list[str]):
    from open_lth_concave.lottery.runner import LotteryRunner
    parser, info = build_parser("lottery", argv)
    args = parser.parse_args(argv)
    desc = desc_from_args("lottery", args, info)
    _check_model_and_dataset(desc)
    levels = args.levels if args.levels is not None else info["defaults"].get("job", {}).get("levels")
    if levels is None:
        raise HparamError("missing required flag --levels (pruning levels after the dense level 0)")
    if levels < 0 or levels > 1000:
        raise HparamError(f"invalid --levels {levels}: must be an integer from 0 to 1000")
    root, platform = job_common(args, desc)
    runner = LotteryRunner(desc, levels, root, args.replicate, platform, args.quiet, args.evaluate_only_at_end,
                           args.train_final_ticket_only)
    return runner, args


@subcommand("lottery", "Find lottery tickets: level 0 dense, then --levels pruning levels with rewinding.")
def cmd_lottery(argv: list[str]) -> int:
    runner, args = make_lottery_runner(argv)
    if args.display_output_location:
        print(runner.replicate_dir)
        return 0
    runner.run()
    if args.tensorboard:
        from open_lth_concave.report.tensorboard import write_events
        print(f"TensorBoard events written to {write_events(runner.replicate_dir)}")
    return 0


@subcommand("lottery_branch", "Run a branch experiment on the levels of a finished lottery trunk.")
def cmd_lottery_branch(argv: list[str]) -> int:
    from open_lth_concave.branches import registry as branches
    if not argv or argv[0].startswith("-"):
        print("Branches (open_lth lottery_branch NAME --help):")
        for name in branches.list():
            print(f"    * {name}: {branches.get(name).description}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    branch = branches.get(argv[0])
    rest = argv[1:]
    from open_lth_concave.branches.base import BranchContext, parse_levels
    known = _pre_parse(rest)
    defaults = _defaults(known.default_hparams)

    def extra(parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("Lottery trunk")
        g.add_argument("--levels", type=str, default=None, help="Trunk levels to branch from, e.g. 0,2-4 (required).")
        g.add_argument("--rewinding_steps", type=str, default=None, help="The trunk's rewinding step, if any.")
        g.add_argument("--trunk_levels", type=int, default=None,
                       help="How many levels the trunk has (default: the highest level found on disk).")
        branch.hparams_cls.add_args(parser)
        for prefix, (cls, source) in branch.extra_groups.items():
            source_key = source.replace("_hparams", "")
            cls.add_args(parser, defaults.get(source_key), prefix=prefix.split("_")[0] + "_",
                         title=f"{cls._group_name} ({prefix})")

    parser, info = build_parser("lottery_branch", rest, extra)
    parser.prog = f"open_lth lottery_branch {argv[0]}"
    args = parser.parse_args(rest)
    desc = desc_from_args("lottery_branch", args, info)
    _check_model_and_dataset(desc)
    branch_args = branch.hparams_cls.from_args(args)
    extra_groups = {}
    for prefix, (cls, source) in branch.extra_groups.items():
        trunk_group = getattr(desc, source).to_dict()
        extra_groups[prefix] = cls.from_args(args, trunk_group, prefix=prefix.split("_")[0] + "_")
        if isinstance(extra_groups[prefix], TrainingHparams):
            from open_lth_concave.lottery.desc import require_standard_training
            require_standard_training(extra_groups[prefix], prefix.split("_")[0] + "_", f"lottery_branch {argv[0]}")
    if args.levels is None:
        raise HparamError("missing required flag --levels (trunk levels, e.g. 0,2-4)")
    root, platform = job_common(args, desc)
    from open_lth_concave.lottery.runner import LotteryRunner
    trunk = LotteryRunner(desc, 0, root, args.replicate, platform, args.quiet, args.evaluate_only_at_end)
    existing = sorted(int(p.name.split("_")[1]) for p in trunk.replicate_dir.glob("level_[0-9]*"))
    max_level = args.trunk_levels if args.trunk_levels is not None else (existing[-1] if existing else -1)
    if max_level < 0:
        raise HparamError(f"no lottery trunk at {trunk.replicate_dir}: run `open_lth lottery` with the same flags first")
    levels = parse_levels(args.levels, max_level)
    trunk.check_record(write=False)  # the trunk must have been made with these hyperparameters
    trunk._setup()
    from open_lth_concave.branches import base as branch_base
    from open_lth_concave.lottery.experiment import banner
    outs = {level: trunk.level_dir(level) / branch.hashname(branch_args, extra_groups) for level in levels}
    if args.display_output_location:
        for out in outs.values():
            print(out)
        return 0
    for level in levels:
        if not (trunk.main_dir(level) / "mask.pth").exists():
            raise HparamError(f"trunk level {level} has no mask at {trunk.main_dir(level)}: run the lottery first")
    groups = [branch_args.display()] + [
        f"{group._group_name} ({prefix})\n" + group.display().split("\n", 1)[1] if "\n" in group.display()
        else f"{group._group_name} ({prefix})" for prefix, group in sorted(extra_groups.items())]
    location = "\n".join(str(out) for out in outs.values())
    print(banner(f"Lottery Branch {argv[0]} (Replicate {args.replicate}, levels {args.levels})",
                 desc.display() + "\n" + "\n".join(groups), location, platform, desc.training_hparams), flush=True)
    for level, out in outs.items():
        branch_base.record(out, branch, branch_args, extra_groups, trunk.replicate_dir, level)
        branch.fn(BranchContext(trunk, level, out, extra_groups), **branch_args.to_dict())
        print(branch_base.result_line(level, argv[0], out), flush=True)
    return 0


# ---- entry point -------------------------------------------------------------------------------------
LAZY_SUBCOMMANDS = {  # imported only when used, so a slow or broken extra never affects the others
    "compare": ("open_lth_concave.report.compare", "Run strategies side by side and write tables and plots."),
    "summary": ("open_lth_concave.report.summary", "Print what a run directory holds."),
    "illustrate": ("open_lth_concave.illustrate", "The paper's Section IV example: l1/log masks on logistic regression."),
    "upstream": ("open_lth_concave.upstream", "The concave strategies inside an open_lth checkout: patch it, or run it patched in memory."),
}


def _register_optional_subcommands() -> None:
    import importlib
    import importlib.util
    for name, (module, help_text) in LAZY_SUBCOMMANDS.items():
        if name in SUBCOMMANDS or importlib.util.find_spec(module) is None:
            continue

        def run(argv: list[str], module: str = module) -> int:
            return importlib.import_module(module).main(argv)
        SUBCOMMANDS[name] = (help_text, run)


def main(argv: Optional[list[str]] = None) -> int:
    from open_lth_concave.plugins import load_core, load_plugins
    argv = list(sys.argv[1:] if argv is None else argv)
    load_core()
    load_plugins()
    _register_optional_subcommands()
    if argv and argv[0] in ("--version", "-V"):
        from open_lth_concave import __version__
        print(f"open_lth_concave {__version__}")
        return 0
    if not argv or argv[0] not in SUBCOMMANDS:
        rule = "=" * 82
        print(f"{rule}\nopen_lth_concave: lottery tickets by iterative magnitude pruning and concave soft masks\n{'-' * 82}")
        for name, (text, _) in SUBCOMMANDS.items():
            print(f"    * open_lth {name}: {text}")
        print(rule)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"open_lth: error: unknown subcommand {argv[0]!r}; valid: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
            return 2
        return 0
    try:
        return SUBCOMMANDS[argv[0]][1](argv[1:])
    except UserError as e:  # every user error derives from it (foundations/errors.py)
        print(f"open_lth {argv[0]}: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except (loop_errors()[0]) as e:
        print(f"open_lth {argv[0]}: error: {e}", file=sys.stderr)
        return 1
    except loop_errors()[1] as e:
        print(f"open_lth {argv[0]}: {e}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"open_lth {argv[0]}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the file system refused (full disk, permissions, ...): the path and the cause
        if e.filename is None:
            raise
        print(f"open_lth {argv[0]}: error: {e.strerror or type(e).__name__}: {e.filename}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
