"""Branches: experiments run on a finished lottery trunk's levels (`open_lth lottery_branch NAME`).

A branch is one function `fn(ctx: BranchContext, **args)`. Its keyword arguments, typed with
`Annotated[type, "help"]`, become its flags and its hashed hyperparameters, so registering the
function is all a new branch takes. It writes into `level_L/lottery_branch_<name>_<hash>`.
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from open_lth_concave.foundations.hparams import Hparams, hp
from open_lth_concave.foundations.registry import Registry
from open_lth_concave.foundations import layout
from open_lth_concave.foundations.desc import hash_of


@dataclass
class BranchContext:
    trunk: Any                 # the LotteryRunner of the trunk, set up (data, steps, rewind model)
    level: int
    output_dir: Path
    extra_groups: dict[str, Hparams]   # e.g. retrain's dataset/training copies


@dataclass(frozen=True)
class Branch:
    name: str
    fn: Callable[..., None]
    hparams_cls: type[Hparams]
    description: str
    # name prefix -> (group class, which trunk group supplies its defaults), e.g. retrain copies
    extra_groups: dict[str, tuple[type[Hparams], str]]

    def hashname(self, args: Hparams, extra: dict[str, Hparams]) -> str:
        return layout.branch_name(self.name, hash_of([args] + [extra[k] for k in sorted(extra)]))


registry: Registry[Branch] = Registry("branch", "branches")


def register_branch(name: str, extra_groups: Optional[dict[str, tuple[type[Hparams], str]]] = None):
    """Register `fn(ctx, **args)`; its typed keyword arguments become a hyperparameter dataclass."""
    def decorator(fn: Callable[..., None]) -> Callable[..., None]:
        hints = typing.get_type_hints(fn, include_extras=True)
        specs = []
        for pname, param in list(inspect.signature(fn).parameters.items())[1:]:
            annotation = hints[pname]
            help_text = ""
            if typing.get_origin(annotation) is typing.Annotated:
                annotation, help_text = typing.get_args(annotation)[0], typing.get_args(annotation)[1]
            default = dataclasses.MISSING if param.default is inspect.Parameter.empty else param.default
            specs.append((pname, annotation, hp(default, help_text)))
        cls = dataclasses.make_dataclass(f"{name.title().replace('_', '')}Hparams", specs, bases=(Hparams,), kw_only=True)
        cls._group_name = f"Branch Arguments ({name})"
        registry.add(name, Branch(name, fn, cls, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
                                  extra_groups or {}))
        return fn
    return decorator


def parse_levels(text: str, max_level: int) -> list[int]:
    """'0,2-4' -> [0, 2, 3, 4]; a one-line error for anything malformed or out of range."""
    from open_lth_concave.foundations.hparams import HparamError
    levels: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                levels.extend(range(lo, hi + 1))
            else:
                levels.append(int(part))
    except ValueError:
        raise HparamError(f"malformed --levels {text!r}: use a comma-separated list with ranges, e.g. 0,2-4") from None
    bad = [lv for lv in levels if lv < 0 or lv > max_level]
    if bad:
        raise HparamError(f"invalid level {bad[0]} in --levels {text!r}: the trunk has levels 0 to {max_level}")
    return sorted(set(levels))


RECORD = layout.BRANCH_RECORD


def record(output_dir: Path, branch: Branch, args: Hparams, extra: dict[str, Hparams], trunk_dir: Path,
           level: int) -> None:
    """The branch folder's own record of what made it (written once; the folder's hash covers the same
    arguments): branch name, trunk, level, its arguments and extra groups with every value."""
    from open_lth_concave.foundations import io
    path = output_dir / RECORD
    if path.exists():
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    io.save_json({"branch": branch.name, "trunk": str(trunk_dir), "level": level, "arguments": args.to_dict(),
                  "groups": {prefix: group.to_dict() for prefix, group in sorted(extra.items())}}, path)


def result_line(level: int, name: str, output_dir: Path) -> str:
    from open_lth_concave.results import branch_result
    r = branch_result(output_dir)
    if r is None:
        return f"Level {level} branch {name}: no result in {output_dir}"
    acc = "not trained" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%"
    return (f"Level {level} branch {name}: remaining weights {100 * r['remaining']:.2f}% "
            f"({r['unpruned']}/{r['total']}), test accuracy {acc}")


def describe_arguments(rec: dict) -> str:
    """`seed=7, strategy=layerwise` from a branch record (empty when there is none)."""
    return ", ".join(f"{k}={v}" for k, v in rec.get("arguments", {}).items())
