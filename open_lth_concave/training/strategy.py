"""Training strategies: what happens inside a training step besides SGD on the task loss.

The training loop (`training/loop.py`) asks its strategy for extra optimizer parameter groups, the
forward pass, an added loss term, and what to do after each optimizer step and at each epoch start.
`standard` holds pruned weights at zero. The concave plug-in registers a strategy that trains a
relaxed mask with a penalty, through this same registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Optional

import torch
from torch import nn

from open_lth_concave.foundations.hparams import Hparams
from open_lth_concave.foundations.registry import Registry
from open_lth_concave.pruning.mask import Mask


@dataclass(kw_only=True)
class NoStrategyHparams(Hparams):
    _group_name: ClassVar[str] = "Training Strategy Hyperparameters"


class TrainingStrategy:
    hparams_cls: ClassVar[type[Hparams]] = NoStrategyHparams

    def __init__(self, model: nn.Module, mask: Mask, hparams: Optional[Hparams] = None):
        self.model = model
        self.mask = mask
        self.hparams = hparams if hparams is not None else self.hparams_cls()

    def param_groups(self) -> list[dict[str, Any]]:
        """Extra optimizer parameter groups (each may set its own lr, momentum, weight_decay)."""
        return []

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called by the training loop once the optimizer over the model and `param_groups()` exists (and
        after a resume has loaded its state). A strategy that updates some of its own tensors itself, e.g.
        in one fused pass, reads their group's settings and state from it, and leaves their `.grad` None
        so that `optimizer.step()` skips them. Without this call (another loop) it must do nothing special."""

    def adapt_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Called after a resume has loaded the optimizer's and this strategy's saved states: put the
        optimizer state of the strategy's own tensors into their current layout (e.g. a flat tensor whose
        order follows the weights' memory format, which may differ from the saved run's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def penalty(self) -> Optional[torch.Tensor]:
        """A term added to the task loss (None for none)."""
        return None

    def before_step(self) -> None:
        """Runs after backward (gradients summed over processes), before the optimizer step: e.g. add
        the analytic gradient of a penalty to `.grad` directly, cheaper than autograd through `penalty`."""

    def after_step(self) -> None:
        """Runs after every optimizer step (e.g. projection, re-masking)."""

    def on_epoch_start(self, epoch: int, total_epochs: int) -> None:
        """Runs at the start of each epoch (e.g. temperature schedules)."""

    def metrics(self) -> dict[str, float]:
        """Extra values logged at evaluation points."""
        return {}

    def should_stop(self, iteration: int) -> bool:
        """Asked at the run's start and after every step (before that step's epoch-boundary checkpoint,
        when it ends an epoch): True ends the run there as finished, with this step's weights as its
        final model (timing.json records `stopped_at`). Must be cheap, deterministic and resumable: keep
        the state in `state_dict`; after a resume the steps since the last checkpoint are asked again."""
        return False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def state_problem(self, state: dict[str, Any]) -> Optional[str]:
        """What is wrong with a saved state before it is trusted (e.g. a value outside its domain), or None.
        Non-finite tensors are refused for every strategy already."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class TrainResult(NamedTuple):
    """What a training run gives back: the trained model and the training strategy it trained with
    (e.g. a soft-mask search's relaxed mask lives in its strategy). `PruningContext.train` returns it."""
    model: nn.Module
    strategy: TrainingStrategy


registry: Registry[type[TrainingStrategy]] = Registry("training strategy", "training strategies")


@registry.register("standard")
class Standard(TrainingStrategy):
    """Plain training of the masked network: pruned weights are zero and stay zero."""

    def __init__(self, model: nn.Module, mask: Mask, hparams: Optional[Hparams] = None):
        super().__init__(model, mask, hparams)
        params = dict(model.named_parameters())
        pruned = [(params[n], m) for n, m in mask.items() if not bool(m.all())]
        self._params = [p for p, _ in pruned]
        self._masks = [m.to(p.device, p.dtype) for p, m in pruned]

    @torch.no_grad()
    def after_step(self) -> None:
        if self._params:
            torch._foreach_mul_(self._params, self._masks)
