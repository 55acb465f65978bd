"""Ablation `sigmoid_mask` (Section V-G, Fig. 9): continuous sparsification (Savarese et al.) as the
paper's baseline, instead of a projected m with a concave penalty.

As in continuous sparsification: the network computes with m = sigmoid(beta s) / sigmoid(s0), so the
mask starts at exactly 1 (s0 = logit(initial_mask_value); 0.5 gives s0 = 0, that method's default);
beta rises each epoch as beta(t) = beta_final^(t/(T-1)) for the T epochs of the search (beta_final at
the last epoch); the penalty is lambda * sum m over surviving entries; the scores s are trained with the
weights' own lr and momentum and no weight decay; after the search the weights whose
sigmoid(beta_final s) is below alpha are pruned (alpha = 0.5, the default here, keeps exactly s >= 0,
that method's ticket rule); and the next level starts from s reset to min(beta_final s, s0), so the
survivors start over at s0 while pruned scores stay behind. Where that method and the paper are silent
we chose: lambda 1e-8 on the sum of masks (that method's code default), carried scores in
`mask_scores.pth`. Registered as both a training strategy and a pruning strategy.
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
from open_lth_concave.foundations import layout
from open_lth_concave.foundations.hparams import HparamError, Hparams, hp
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.pruning.strategy import PruningContext
from open_lth_concave.pruning.strategy import registry as pruning_strategies
from open_lth_concave.training.strategy import registry as training_strategies


@dataclass(kw_only=True)
class SigmoidMaskHparams(MaskSearchHparams):
    _group_name: ClassVar[str] = "Pruning Hyperparameters (sigmoid_mask)"
    _description: ClassVar[str] = ("Ablation: continuous sparsification, mask sigmoid(beta s)/sigmoid(s0) with a rising "
                                   "temperature beta, instead of a concave penalty.")
    regularization_lambda: float = hp(1e-8, "lambda: weight of the penalty on the sum of masks.", range=">= 0")
    threshold: Optional[float] = hp(0.5, "alpha: weights with sigmoid(beta_final s) below it are pruned "
                          "(0.5: keep s >= 0, continuous sparsification's rule).", range="(0, 1)")
    initial_mask_value: float = hp(0.5, "sigmoid(s0): s starts at s0 = logit(value) (0.5: s0 = 0; its logit must "
                                   "be finite); the mask sigmoid(beta s)/sigmoid(s0) starts at 1.", range="(0, 1)")
    mask_weight_decay: Optional[float] = hp(0.0, "Weight decay of the scores s (continuous sparsification: 0).",
                                            range=">= 0")
    beta_final: float = hp(200.0, "beta at the last epoch of the search; beta(t) = beta_final^(t/(T-1)).",
                           range=">= 1")

    def validate(self) -> None:
        super().validate()
        if self.pruning_mode == "target":
            raise HparamError("invalid --pruning_mode target for sigmoid_mask: allowed: threshold, fraction "
                              "(target is for the concave_<regularizer> strategies)")


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

    @property
    def s0(self) -> float:
        return self.default_start_value()

    def on_epoch_start(self, epoch: int, total_epochs: int) -> None:
        span = max(1, (self.total_epochs if self.total_epochs is not None else total_epochs) - self.start_epoch - 1)
        t = min(max(epoch - self.start_epoch, 0), span)
        self.beta = self.hparams.beta_final ** (t / span)

    def mask_values(self) -> torch.Tensor:
        return torch.sigmoid(self.beta * self.variable) * (self.alive / self.hparams.initial_mask_value)

    def reset_scores(self) -> dict[str, torch.Tensor]:
        """What the next level starts from: min(beta_final s, s0) (survivors start over at s0)."""
        with torch.no_grad():
            return self.layout.to_dict(torch.clamp(self.hparams.beta_final * self.variable, max=self.s0) * self.alive)

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
                "mask_above_threshold": float(((m >= self.hparams.alpha) * self.alive).sum() / n)}

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.layout.to_dict(self.variable), "beta": self.beta, **self.layout_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict({"variable": state["scores"], "layout_orders": state.get("layout_orders")})
        self.beta = float(state["beta"])


@pruning_strategies.register("sigmoid_mask")
class SigmoidMaskSearch(MaskSearch):
    hparams_cls = SigmoidMaskHparams
    description = "Ablation: sigmoid-reparameterized masks with a rising temperature, pruned below alpha."
    carry_file = layout.declare("mask_scores", "mask_scores.pth", owner="concave")
    display_name, color, marker = "Sigmoid mask", "#ff7f0e", "D"

    def training_strategy(self, ctx: PruningContext, start: Optional[dict[str, torch.Tensor]]) -> Callable:
        opt = self.mask_optimizer(ctx)
        hparams = dataclasses.replace(self.hparams, mask_lr=opt.lr, mask_momentum=opt.momentum,
                                      mask_weight_decay=opt.weight_decay)
        return functools.partial(SigmoidMask, hparams=hparams, initial_scores=start,
                                 start_epoch=ctx.start_step.ep, total_epochs=ctx.end_step.ep)

    def carried_values(self, strategy: FlatMaskStrategy, relaxed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        after = strategy.reset_scores()
        return {n: v * (relaxed[n] > 0) for n, v in after.items()}

    def extra_metrics(self, strategy: FlatMaskStrategy) -> dict[str, Any]:
        return {"beta_final": self.hparams.beta_final}
