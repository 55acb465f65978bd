"""The relaxed mask's hyperparameters, declared once: its start value, its threshold alpha and its optimizer.

`MaskOptimizerHparams` is the mixin shared by every mask search's pruning hyperparameters
(`search.MaskSearchHparams`, hence `concave_<regularizer>` and `sigmoid_mask`) and by the `soft_mask`
training strategy (`soft_mask.SoftMaskHparams`). Each field, its help and its range live here.

Two defaults differ on purpose, and each is declared once, where its meaning is: in a search, `None`
means "derived from --mask_optimizer and the training hyperparameters" (`alpha`, `search.MaskOptimizer`);
the `soft_mask` training strategy receives resolved values, so it declares them resolved
(`with_default`): alpha = `DEFAULT_THRESHOLD["paper"]`, mask weight decay 0 (exactly Eq. 2). Changing any
default here renames experiments (a name leaves defaults out) and trips the `hparams.json` check.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from open_lth_concave.foundations.hparams import Hparams, hp

# Defaults chosen by measurement (README_concave.md). `paper`: the mask is one more parameter of the
# run's own optimizer (its lr, momentum and weight decay), as the paper's open_lth code treats every
# parameter. Weight decay and lambda then drive the masks that the loss does not hold into a block
# near m0 * exp(-D) (D = decay x sum of the mask lr over the round / (1 - momentum)), and a small alpha
# prunes them once a round is long enough (the paper's: D ~ 2.25). `scaled`: 100 x the training lr and
# no decay, which moves masks by relevance in short rounds. `auto` (the searches' default): `paper` in the
# threshold and fraction modes, `scaled` in the target mode, where the paper's masks move as one block
# and the target could only be met by cutting into it (README_concave.md, "Sparsity you can aim").
MASK_OPTIMIZERS = ("auto", "paper", "scaled")
SCALED_MASK_LR_FACTOR = 100.0
DEFAULT_THRESHOLD = {"paper": 0.05, "scaled": 0.4}   # alpha when --threshold is not given


@dataclass(kw_only=True)
class MaskOptimizerHparams(Hparams):
    """Start value, threshold and optimizer of a relaxed mask (None: derived, see the module docstring)."""
    initial_mask_value: float = hp(0.5, "Mask value of every surviving weight at level 1 (when no mask is "
                                   "carried over).", range="(0, 1]")
    threshold: Optional[float] = hp(None, "alpha: masks below it are pruned after the search (default: 0.05, a "
                                    "small alpha << 1 as in the paper; 0.4 with --mask_optimizer=scaled).",
                                    range="(0, 1)")
    mask_lr: Optional[float] = hp(None, "Mask learning rate, following the training lr schedule (default: the "
                                  "training lr; 100 x with --mask_optimizer=scaled).", range=">= 0")
    mask_momentum: Optional[float] = hp(None, "Mask SGD momentum (default: the training momentum).", range=">= 0")
    mask_weight_decay: Optional[float] = hp(None, "Mask weight decay (default: the training weight decay; "
                                            "0 with --mask_optimizer=scaled).", range=">= 0")


def with_default(name: str, default: Any, help: Optional[str] = None, base: type = MaskOptimizerHparams) -> Any:
    """Field `name` of `base` re-declared with another default (and help): its range and choices stay."""
    inherited = {f.name: f for f in dataclasses.fields(base)}[name]
    metadata = dict(inherited.metadata)
    if help is not None:
        metadata["help"] = help
    return dataclasses.field(default=default, metadata=metadata)
