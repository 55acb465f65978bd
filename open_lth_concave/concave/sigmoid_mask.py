"""Ablation `sigmoid_mask` (Section V-G): the mask is m = sigmoid(beta * s) instead of a projected m.

s is trainable (starting at logit(initial_mask_value), carried over between levels as `mask_scores.pth`),
beta rises each epoch as beta(t) = beta_final^(t/T) (t = epochs since the search began, T = epochs
of the search), the penalty is lambda * sum sigmoid(beta s) over surviving entries, and after the
search the masks sigmoid(beta_final * s) below alpha are pruned. Registered as both a training
strategy and a pruning strategy.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import nn

from open_lth_concave.concave.flat_mask import FlatMaskStrategy
from open_lth_concave.concave.search import MaskSearch, MaskSearchHparams
from open_lth_concave.foundations.hparams import HparamError, Hparams, hp
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.pruning.strategy import PruningContext
from open_lth_concave.pruning.strategy import registry as pruning_strategies
from open_lth_concave.training.strategy import registry as training_strategies


@dataclass(kw_only=True)
class SigmoidMaskHparams(MaskSearchHparams):
    _group_name: ClassVar[str] = "Pruning Hyperparameters (sigmoid_mask)"
    _description: ClassVar[str] = "Ablation: mask sigmoid(beta s) with a rising temperature beta, instead of a concave penalty."
    beta_final: float = hp(200.0, "beta at the end of the search; beta(t) = beta_final^(t/T), >= 1.")

    def validate(self) -> None:
        super().validate()
        if not self.initial_mask_value < 1:
            raise HparamError(f"invalid --initial_mask_value {self.initial_mask_value}: must be in (0, 1) "
                              "for sigmoid_mask (its logit must be finite)")
        if not self.beta_final >= 1:
            raise HparamError(f"invalid --beta_final {self.beta_final}: must be >= 1")


@training_strategies.register("sigmoid_mask")
class SigmoidMask(FlatMaskStrategy):
    """m = sigmoid(beta s) * alive; beta follows an exponential schedule set at each epoch start."""
    hparams_cls = SigmoidMaskHparams

    def __init__(self, model: nn.Module, mask: Mask, hparams: Optional[Hparams] = None, *,
                 initial_scores: Optional[dict[str, torch.Tensor]] = None, start_epoch: int = 0,
                 total_epochs: Optional[int] = None):
        if hparams is None:
            hparams = SigmoidMaskHparams(pruning_strategy="sigmoid_mask")
        super().__init__(model, mask, hparams, initial_variable=initial_scores)
        self.start_epoch = start_epoch
        self.total_epochs = total_epochs
        self.beta = 1.0
        self.lam = self.hparams.regularization_lambda

    def default_start_value(self) -> float:
        p = self.hparams.initial_mask_value
        return math.log(p / (1 - p))

    def on_epoch_start(self, epoch: int, total_epochs: int) -> None:
        span = max(1, (self.total_epochs if self.total_epochs is not None else total_epochs) - self.start_epoch)
        t = min(max(epoch - self.start_epoch, 0), span)
        self.beta = self.hparams.beta_final ** (t / span)

    def mask_values(self) -> torch.Tensor:
        return torch.sigmoid(self.beta * self.variable) * self.alive

    def final_mask(self) -> torch.Tensor:
        return torch.sigmoid(self.hparams.beta_final * self.variable.detach()) * self.alive

    def relaxed_mask(self) -> dict[str, torch.Tensor]:
        """sigmoid(beta_final * s): the mask at the end of the schedule (t = T)."""
        return self.layout.to_dict(self.final_mask())

    def penalty(self) -> Optional[torch.Tensor]:
        return None if self.lam == 0 else self.lam * self.mask_values().sum()

    @torch.no_grad()
    def metrics(self) -> dict[str, float]:
        m, n = self.final_mask(), self.alive.sum().clamp_min(1)
        return {"mask_beta": self.beta, "mask_mean": float(m.sum() / n),
                "mask_above_threshold": float(((m >= self.hparams.threshold) * self.alive).sum() / n)}

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.layout.to_dict(self.variable), "beta": self.beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict({"variable": state["scores"]})
        self.beta = float(state["beta"])


@pruning_strategies.register("sigmoid_mask")
class SigmoidMaskSearch(MaskSearch):
    hparams_cls = SigmoidMaskHparams
    description = "Ablation: sigmoid-reparameterized masks with a rising temperature, pruned below alpha."
    carry_file = "mask_scores.pth"

    def training_strategy(self, ctx: PruningContext, start: Optional[dict[str, torch.Tensor]]) -> Callable:
        hparams = dataclasses.replace(self.hparams, mask_lr=self.mask_lr(ctx))
        return functools.partial(SigmoidMask, hparams=hparams, initial_scores=start,
                                 start_epoch=ctx.extra["start_step"].ep, total_epochs=ctx.extra["end_step"].ep)

    def carried_values(self, strategy: FlatMaskStrategy, relaxed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return strategy.variable_values()

    def extra_metrics(self, strategy: FlatMaskStrategy) -> dict[str, Any]:
        return {"beta_final": self.hparams.beta_final}
