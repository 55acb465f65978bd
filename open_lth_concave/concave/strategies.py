"""Pruning strategies `concave_<regularizer>`: one per registered regularizer, made automatically.

Each strategy's hyperparameters = the common mask-search fields (`search.MaskSearchHparams`) + the
regularizer's own fields (e.g. `epsilon` for log), with lambda's default taken from the regularizer.
Strategies for the regularizers known at import are registered by name; a regularizer registered
later (e.g. by another plug-in) gets its strategy the first time `concave_<name>` is looked up,
through a name pattern on the pruning registry. An unknown `concave_foo` fails with the list of
regularizers.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Callable, Optional

import torch

from open_lth_concave.concave.regularizers import MaskPenalty, Regularizer
from open_lth_concave.concave.regularizers import registry as regularizers
from open_lth_concave.concave.mask_hparams import DEFAULT_THRESHOLD
from open_lth_concave.concave.search import (MaskOptimizer, MaskSearch, MaskSearchHparams, decay_budget, travel_fn,
                                             unheld_mask_end)
from open_lth_concave.concave.settle import EarlyStopHparams
from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
from open_lth_concave.concave.target import SparsityTarget
from open_lth_concave.foundations.errors import did_you_mean
from open_lth_concave.foundations.hparams import hp
from open_lth_concave.foundations.registry import UnknownNameError
from open_lth_concave.pruning.strategy import PruningContext
from open_lth_concave.pruning.strategy import registry as pruning_strategies

PREFIX = "concave_"


class ConcaveSearch(MaskSearch):
    """Algorithm 1 with the soft mask and a concave penalty; subclassed per regularizer."""
    regularizer_name: str = ""
    regularizer_cls: type[Regularizer] = Regularizer

    def auto_mode(self, ctx: PruningContext) -> tuple[str, str]:
        """threshold when the paper's mask optimizer brings a mask that the loss does not hold below the
        paper's alpha within this round (the block model, `search.unheld_mask_end`); else target."""
        h = dataclasses.replace(self.hparams, pruning_mode="threshold")
        paper = MaskOptimizer.resolve(dataclasses.replace(h, mask_optimizer="paper"), ctx.training_hparams)
        budget = decay_budget(ctx.training_hparams, ctx.iterations_per_epoch, ctx.start_step.iteration,
                              ctx.end_step.iteration, paper)
        penalty = self.mask_penalty()
        end = unheld_mask_end(h.initial_mask_value, paper.weight_decay, penalty.lam, penalty.regularizer.derivative,
                              budget["lr_sum_over_1_minus_momentum"])
        alpha = h.threshold if h.threshold is not None else DEFAULT_THRESHOLD["paper"]
        detail = (f"a mask the loss does not hold ends near {end:.3g} after this round with the paper's mask "
                  f"optimizer (D = {budget['decay_D']:.3g})")
        if end < alpha:
            return "threshold", f"{detail}, below alpha = {alpha:g}: the masks decide"
        return "target", (f"{detail}, not below alpha = {alpha:g}: the round is too short for the threshold, so "
                          f"{100 * h.pruning_fraction:g}% of the survivors are aimed at")

    def mask_penalty(self) -> MaskPenalty:
        """lambda x r with the regularizer's own hyperparameters taken from this strategy's (e.g. epsilon)."""
        return MaskPenalty.resolve(self.regularizer_name, self.hparams.regularization_lambda, self.hparams.to_dict())

    def soft_mask_hparams(self, ctx: PruningContext, penalty: MaskPenalty) -> SoftMaskHparams:
        h, opt = self.hparams, self.mask_optimizer(ctx)
        declared = {f.name for f in dataclasses.fields(SoftMaskHparams)}
        own = {f.name: getattr(penalty.regularizer.hparams, f.name)
               for f in dataclasses.fields(penalty.regularizer.hparams) if f.name in declared}
        return SoftMaskHparams(regularizer=penalty.name, regularization_lambda=penalty.lam, **own,
                               initial_mask_value=h.initial_mask_value, threshold=h.alpha, mask_lr=opt.lr,
                               mask_momentum=opt.momentum, mask_weight_decay=opt.weight_decay,
                               pruning_layers_to_ignore=h.pruning_layers_to_ignore)

    def training_strategy(self, ctx: PruningContext, start: Optional[dict[str, torch.Tensor]]) -> Callable:
        if "auto" in (self.hparams.pruning_mode, self.hparams.mask_optimizer):   # called without prune()
            self.resolve_auto(ctx)
        h = self.hparams
        target = None
        steps = ctx.end_step.iteration - ctx.start_step.iteration
        if h.pruning_mode == "target":
            travel = travel_fn(ctx.training_hparams, ctx.iterations_per_epoch, ctx.start_step.iteration,
                               self.mask_optimizer(ctx))
            target = SparsityTarget(fraction=h.pruning_fraction, threshold=h.alpha, total_steps=steps, travel=travel)
        settle = h.settle_stop(h.pruning_mode, h.alpha, h.pruning_fraction, ctx.start_step, steps)
        penalty = self.mask_penalty()
        return functools.partial(SoftMask, hparams=self.soft_mask_hparams(ctx, penalty), mask_penalty=penalty,
                                 initial_mask=start, target=target, settle=settle)

    def extra_metrics(self, strategy) -> dict:
        settle = getattr(strategy, "settle", None)
        return {"early_stop": settle.summary()} if settle is not None else {}


def _first_line(text: Optional[str]) -> str:
    return ((text or "").strip().splitlines() or ["r(m) applied to every surviving mask entry."])[0]


@functools.cache
def concave_strategy(regularizer_name: str) -> type[ConcaveSearch]:
    """The pruning strategy class for one regularizer (built once)."""
    reg_cls = regularizers.get(regularizer_name)
    own_fields = [f.name for f in dataclasses.fields(reg_cls.hparams_cls)]
    clash = sorted(set(own_fields) & {f.name for f in dataclasses.fields(MaskSearchHparams)})
    if clash:
        raise ValueError(f"regularizer {regularizer_name!r} hyperparameter(s) {', '.join(clash)} clash with "
                         "the mask-search fields; rename them")
    name = PREFIX + regularizer_name
    hparams_cls = dataclasses.make_dataclass(
        f"Concave{regularizer_name.title().replace('_', '')}Hparams",
        [("regularization_lambda", float,
          hp(reg_cls.default_lambda, f"lambda of Eq. 2: weight of the {regularizer_name} mask penalty.", range=">= 0"))],
        bases=(reg_cls.hparams_cls, EarlyStopHparams, MaskSearchHparams), kw_only=True,
        namespace={"_group_name": f"Pruning Hyperparameters ({name})",
                   "_description": f"Soft-mask search with the {regularizer_name} penalty: "
                                   f"{_first_line(reg_cls.__doc__)}"})
    return type(f"Concave{regularizer_name.title().replace('_', '')}", (ConcaveSearch,), {
        "hparams_cls": hparams_cls, "regularizer_name": regularizer_name, "regularizer_cls": reg_cls,
        "description": f"Soft masks with the concave {regularizer_name} penalty, pruned below alpha (Algorithm 1).",
        "display_name": f"Concave {reg_cls.display_name or regularizer_name}", "color": reg_cls.color,
        "marker": reg_cls.marker, "legend_symbols": {**ConcaveSearch.legend_symbols, **reg_cls.legend_symbols},
    })


def _register_known() -> None:
    for regularizer_name in regularizers.list():
        if PREFIX + regularizer_name not in pruning_strategies.list():
            pruning_strategies.add(PREFIX + regularizer_name, concave_strategy(regularizer_name))


@pruning_strategies.register_pattern(PREFIX + r"(\w+)", PREFIX + "<regularizer>")
def _late_regularizer(match: re.Match) -> type[ConcaveSearch]:
    try:
        strategy = concave_strategy(match.group(1))
    except UnknownNameError:
        raise ValueError(f"unknown regularizer {match.group(1)!r}{did_you_mean(match.group(1), regularizers.list())}; "
                         f"valid: {', '.join(regularizers.names())}") from None
    pruning_strategies.add(match.group(0), strategy)
    return strategy


_register_known()
