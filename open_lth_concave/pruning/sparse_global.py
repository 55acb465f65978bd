"""Iterative magnitude pruning: remove the smallest-magnitude fraction of surviving weights, globally."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Optional

import torch

from open_lth_concave.foundations.hparams import HparamError, PruningHparams, hp
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.pruning.strategy import (PruningContext, PruningError, PruningStrategy, layers_to_ignore,
                                               registry)


@dataclass(kw_only=True)
class SparseGlobalHparams(PruningHparams):
    pruning_fraction: float = hp(0.2, "Fraction of the surviving prunable weights removed at each level.",
                                 range="(0, 1)")
    pruning_layers_to_ignore: Optional[str] = hp(None, "Comma-separated tensor names never pruned (e.g. fc.weight).")


def _alive_scores(scores: dict[str, torch.Tensor], mask: Mask, ignore: set[str]) -> tuple[list[str], torch.Tensor]:
    unknown = sorted(ignore - set(mask))
    if unknown:
        raise HparamError(f"invalid --pruning_layers_to_ignore {','.join(unknown)}; prunable tensors: {', '.join(mask)}")
    prunable = [n for n in mask if n not in ignore]
    alive = torch.cat([scores[n].detach().cpu().float()[mask[n] == 1] for n in prunable]) if prunable else torch.zeros(0)
    return prunable, alive


def prune_by_magnitude_rule(scores: dict[str, torch.Tensor], mask: Mask, fraction: float, ignore: set[str]) -> Mask:
    """open_lth's rule: count = ceil(fraction x surviving), threshold = sorted surviving scores[count],
    keep scores strictly above it. On the same weights this gives open_lth's mask.

    Counting decision (documented in the README): the fraction is taken over the surviving weights of
    the tensors that may be pruned, not over all mask entries as open_lth does, so `--pruning_fraction
    0.2` removes (about) 20% of what can be removed.
    """
    prunable, alive = _alive_scores(scores, mask, ignore)
    count = math.ceil(fraction * alive.numel())
    new_mask = Mask({n: v.clone() for n, v in mask.items()})
    if count == 0 or alive.numel() == 0:
        return new_mask
    threshold = torch.sort(alive).values[min(count, alive.numel() - 1)]
    for n in prunable:
        s = scores[n].detach().cpu().float()
        new_mask[n] = torch.where((s > threshold) & (mask[n] == 1), 1.0, 0.0)
    return new_mask


def prune_exact_count(scores: dict[str, torch.Tensor], mask: Mask, count: int, ignore: set[str]) -> Mask:
    """Remove exactly `count` surviving, non-ignored entries with the smallest scores (ties broken by
    position), for strategies whose contract is an exact count."""
    prunable, alive = _alive_scores(scores, mask, ignore)
    count = max(0, min(count, alive.numel()))
    new_mask = Mask({n: v.clone() for n, v in mask.items()})
    if count == 0:
        return new_mask
    drop = torch.zeros(alive.numel(), dtype=torch.bool)
    drop[torch.argsort(alive, stable=True)[:count]] = True
    offset = 0
    for n in prunable:
        alive_here = mask[n] == 1
        k = int(alive_here.sum())
        flat = new_mask[n].flatten().clone()
        idx = torch.nonzero(alive_here.flatten(), as_tuple=True)[0]
        flat[idx[drop[offset:offset + k]]] = 0.0
        new_mask[n] = flat.view_as(mask[n])
        offset += k
    return new_mask


@registry.register("sparse_global")
class SparseGlobal(PruningStrategy):
    hparams_cls = SparseGlobalHparams
    description = "Global magnitude pruning (IMP): drop the smallest surviving weights."
    display_name, color, marker = "IMP", "#1f77b4", "o"

    def prune(self, ctx: PruningContext) -> Mask:
        ignore = layers_to_ignore(self.hparams.pruning_layers_to_ignore)
        check_prunable_left(ctx.current_mask, ignore, ctx.level)
        model = ctx.trained_model()
        params = dict(model.named_parameters())
        scores = {n: params[n].abs() for n in ctx.current_mask}
        mask = prune_by_magnitude_rule(scores, ctx.current_mask, self.hparams.pruning_fraction, ignore)
        warn_dead_layers(ctx.current_mask, mask, ignore, ctx.level)
        return mask


def _dead(mask: Mask, ignore: set[str]) -> list[str]:
    return [n for n, v in mask.items() if n not in ignore and v.numel() and not bool(v.any())]


def check_prunable_left(mask: Mask, ignore: set[str], level: int) -> None:
    """Stop before level `level` when every prunable tensor is fully pruned already (nothing is left)."""
    prunable = [n for n in mask if n not in ignore]
    if prunable and len(_dead(mask, ignore)) == len(prunable):
        raise PruningError(f"level {level}: every prunable tensor ({', '.join(prunable)}) was fully pruned at level "
                           f"{level - 1}; nothing is left to prune: run fewer --levels (or a smaller --pruning_fraction)")


def warn_dead_layers(before: Mask, after: Mask, ignore: set[str], level: int) -> None:
    """One line when this level prunes a whole tensor (a layer no signal passes through any more)."""
    newly = [n for n in _dead(after, ignore) if n not in _dead(before, ignore)]
    if newly:
        print(f"warning: level {level} prunes every weight of {', '.join(newly)}: no signal passes through "
              f"{'it' if len(newly) == 1 else 'them'} any more (the ticket's accuracy drops to chance where it is the "
              "only path); later levels stop once nothing is left to prune; fewer --levels, a smaller "
              "--pruning_fraction or --pruning_layers_to_ignore avoid it", file=sys.stderr, flush=True)
