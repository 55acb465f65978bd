"""The flags of a subcommand: which exist for a given command line, and the parser that reads them.

Flags come from the hyperparameter dataclasses (see foundations/hparams). Parsing is two-phase: a first
pass reads the flags that decide which other flags exist (`--default_hparams`, `--pruning_strategy`,
`--training_strategy`, `--pretrain`, `--rewinding_steps`); then the full parser is built with every group's
flags, showing the preset's defaults in `--help`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional

from open_lth_concave.foundations.commands import COMMANDS
from open_lth_concave.foundations.errors import UserError, did_you_mean
from open_lth_concave.foundations.hparams import DatasetHparams, HparamError, ModelHparams, TrainingHparams
from open_lth_concave.platform import Platform

# what `open_lth --help` and each command's `--help` say it does (the parser's description)
DESCRIPTIONS = {name: COMMANDS[name] for name in ("train", "lottery", "lottery_branch")}


class UsageError(UserError):
    """A bad command line: reported as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is a one-line UsageError instead of usage text and an exit."""
    unknown_flag_hint: Optional[Callable[[str], Optional[str]]] = None   # flag -> where it does exist

    def error(self, message: str) -> None:  # argparse prints usage + message; we print one line
        if message.startswith("unrecognized arguments:"):
            flags = [token.split("=", 1)[0] for token in message.split(":", 1)[1].split() if token.startswith("--")]
            hints = [self.unknown_flag_hint(flag) for flag in flags] if self.unknown_flag_hint is not None else []
            hints = [h for h in hints if h]
            if hints:
                message += " (" + "; ".join(hints) + ")"
            elif flags:      # a misspelling of one of this command's own flags
                message += did_you_mean(flags[0], [o for o in self._option_string_actions if o.startswith("--")])
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


def strategy_hparams_cls(name: str):
    """Pruning strategy `name`'s hyperparameter dataclass (an unknown name fails with the valid ones)."""
    from open_lth_concave.pruning.strategy import registry
    return registry.get(name).hparams_cls


def strategy_flags(strategy: str) -> list[str]:
    """The flags of pruning strategy `strategy`'s own hyperparameters (its dataclass), --pruning_strategy aside."""
    return [f"--{f.name}" for f in fields(strategy_hparams_cls(strategy)) if f.name != "pruning_strategy"]


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


def first_pass(argv: list[str]) -> argparse.Namespace:
    """The flags that decide which other flags exist, read from `argv` (everything else is ignored)."""
    pre = OneLineParser(add_help=False)
    pre.add_argument("--default_hparams", type=str, default=None)
    pre.add_argument("--pruning_strategy", type=str, default=None)
    pre.add_argument("--training_strategy", type=str, default=None)
    pre.add_argument("--pretrain", action="store_true")
    pre.add_argument("--rewinding_steps", type=str, default=None)
    pre.add_argument("-h", "--help", action="store_true")
    known, _ = pre.parse_known_args(argv)
    return known


def preset_defaults(name: Optional[str]) -> dict[str, dict[str, Any]]:
    """The defaults `--default_hparams=name` gives, per group (`dataset`, `training`, ..., `job`); none without one."""
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


def _add_training_strategy_args(parser: argparse.ArgumentParser, name: str, defaults: Optional[dict]):
    """The flags of training strategy `name`'s own hyperparameters; returns their class (None: it has none)."""
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


def _add_together_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicates_together", type=int, default=1,
                        help="Train this many replicates (from --replicate on) at once in one process, parameters "
                             "stacked with torch.func.vmap; standard strategy only; each lands in its own "
                             "replicate folder. (default: 1)")


def _add_lottery_flags(parser: argparse.ArgumentParser, pretrain: bool, defaults: dict) -> None:
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
    if pretrain:
        DatasetHparams.add_args(parser, defaults.get("pretrain_dataset", defaults.get("dataset")),
                                prefix="pretrain_", title="Pretraining Dataset Hyperparameters")
        TrainingHparams.add_args(parser, defaults.get("pretrain_training", defaults.get("training")),
                                 prefix="pretrain_", title="Pretraining Training Hyperparameters")


def _add_branch_flags(parser: argparse.ArgumentParser, branch, defaults: dict) -> None:
    """`lottery_branch NAME`: the trunk's levels, the branch's own arguments, its extra groups."""
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


@dataclass
class ParsedFirst:
    """What the first pass decided for the full parser: the preset's defaults and which classes read the flags."""
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    training_strategy_cls: Optional[type] = None   # `train`: the training strategy's own hyperparameters, if any
    pruning_cls: Optional[type] = None             # lottery jobs: the pruning strategy's hyperparameter class
    pretrain: bool = False                         # `lottery --pretrain`: the --pretrain_* groups exist
    branch: Any = None                             # `lottery_branch NAME`: the registered branch


def parser(command: str, argv: list[str], branch: Any = None, exact: bool = False
           ) -> tuple[OneLineParser, ParsedFirst]:
    """The full parser of `open_lth <command>` for the flags in `argv` (train, lottery, or lottery_branch
    with its registered `branch`), and what the first pass decided. `exact`: flags must be spelled in full
    (no argparse abbreviations)."""
    known = first_pass(argv)
    defaults = preset_defaults(known.default_hparams)
    prog = f"open_lth {command}" + (f" {branch.name}" if branch is not None else "")
    p = OneLineParser(prog=prog, description=DESCRIPTIONS[command],
                      epilog=registered_names_epilog() if known.help else None,
                      formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=not exact)
    add_job_flags(p)
    DatasetHparams.add_args(p, defaults.get("dataset"))
    ModelHparams.add_args(p, defaults.get("model"))
    TrainingHparams.add_args(p, defaults.get("training"))
    first = ParsedFirst(defaults=defaults, branch=branch)
    if command == "train":   # the training strategy's own flags (lottery jobs train with `standard`)
        name = known.training_strategy or defaults.get("training", {}).get("training_strategy") or "standard"
        first.training_strategy_cls = _add_training_strategy_args(p, name, defaults.get("training_strategy"))
        _add_together_flag(p)
    if command in ("lottery", "lottery_branch"):
        strategy = known.pruning_strategy or defaults.get("pruning", {}).get("pruning_strategy")
        pruning_cls = strategy_hparams_cls(strategy) if strategy else None
        if pruning_cls is None:
            from open_lth_concave.foundations.hparams import PruningHparams
            pruning_cls = PruningHparams
        pruning_cls.add_args(p, defaults.get("pruning"))
        first.pruning_cls = pruning_cls
        p.unknown_flag_hint = other_strategies_hint(strategy or "the default strategy")
        if command == "lottery":
            _add_lottery_flags(p, known.pretrain, defaults)
            first.pretrain = known.pretrain
        else:
            _add_branch_flags(p, branch, defaults)
    return p, first

