"""One flat trainable tensor for the masks of every soft-masked layer, and the masked forward pass.

Keeping all mask entries in ONE parameter (with per-layer views made by a single `split`) means the
projection, the re-zeroing of pruned entries and the penalty are each one op over the whole
network, whatever its size. The masked weights m * theta come from one autograd Function
(`_MaskedWeights`) whose backward writes the mask gradient straight into one flat tensor, and the
network runs on them through `torch.func.functional_call`, so the model itself is never modified.
Both the concave soft mask (`soft_mask.py`) and the sigmoid ablation (`sigmoid_mask.py`) build on
`FlatMaskStrategy`.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from torch.func import functional_call

from open_lth_concave.foundations.hparams import Hparams
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.pruning.strategy import layers_to_ignore
from open_lth_concave.training.strategy import TrainingStrategy


class FlatLayout:
    """Where each layer's entries live inside the flat tensor."""

    def __init__(self, names: list[str], shapes: list[torch.Size]):
        self.names = names
        self.shapes = shapes
        self.sizes = [int(torch.Size(s).numel()) for s in shapes]

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer views of `flat` (no copy; gradients flow back to `flat`)."""
        return [chunk.view(shape) for chunk, shape in zip(torch.split(flat, self.sizes), self.shapes)]

    def to_dict(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: v.detach().cpu().clone() for n, v in zip(self.names, self.views(flat))}

    def flatten(self, per_layer: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([per_layer[n].detach().reshape(-1).float().cpu() for n in self.names])


class _MaskedWeights(torch.autograd.Function):
    """(flat m, theta_1..theta_k) -> (m_1 * theta_1, ..., m_k * theta_k).

    Autograd's own chain (split, per-layer mul, cat of the per-layer mask gradients) costs three
    extra passes over the mask per step; on LeNet, where each weight is used only 128 x 3 times per
    step, such passes cost as much as the matmuls."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, layout: "FlatLayout", *weights: torch.Tensor):
        ctx.save_for_backward(flat, *weights)
        ctx.layout = layout
        # Outputs and weight gradients keep each weight's own memory layout (channels_last convs):
        # a gradient laid out otherwise costs an extra copy when it is accumulated (and DDP warns).
        return tuple(torch.mul(w, m, out=torch.empty_like(w)) for w, m in zip(weights, layout.views(flat)))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        flat, *weights = ctx.saved_tensors
        grad_flat = None
        if ctx.needs_input_grad[0]:
            grad_flat = torch.empty_like(flat)
            for g, w, out in zip(grads, weights, ctx.layout.views(grad_flat)):
                torch.mul(g, w, out=out)
        grad_weights: list = [None] * len(weights)
        if any(ctx.needs_input_grad[2:]):
            grad_weights = [torch.mul(g, m, out=torch.empty_like(w))
                            for g, m, w in zip(grads, ctx.layout.views(flat), weights)]
        return (grad_flat, None, *grad_weights)


class FlatMaskStrategy(TrainingStrategy):
    """Trains one flat tensor `self.variable` that defines a mask on every prunable, non-ignored layer.

    Subclasses say how the variable becomes the mask (`mask_values`) and what it costs (`penalty`).
    Entries pruned at earlier levels never receive a gradient, and the plain weights of pruned entries
    are held at zero exactly as the standard strategy does, so a saved search model is a clean ticket.
    """

    def __init__(self, model: nn.Module, mask: Mask, hparams: Optional[Hparams] = None, *,
                 initial_variable: Optional[dict[str, torch.Tensor]] = None):
        super().__init__(model, mask, hparams)
        ignore = layers_to_ignore(getattr(self.hparams, "pruning_layers_to_ignore", None))
        params = dict(model.named_parameters())
        names = [n for n in mask if n not in ignore]
        self.layout = FlatLayout(names, [params[n].shape for n in names])
        self._weights = [params[n] for n in names]
        device = self._weights[0].device if self._weights else torch.device("cpu")
        dtype = self._weights[0].dtype if self._weights else torch.float32
        alive = torch.cat([mask[n].reshape(-1) for n in names]) if names else torch.zeros(0)
        self.alive = alive.to(device, dtype)
        self.any_pruned = bool((alive == 0).any())   # else the alive multiplications are skipped
        start = (self.layout.flatten(initial_variable) if initial_variable is not None
                 else torch.full((self.layout.numel,), self.default_start_value()))
        self.variable = nn.Parameter(start.to(device, dtype) * self.alive)
        pruned = [(params[n], m) for n, m in mask.items() if not bool(m.all())]
        self._pruned_weights = [p for p, _ in pruned]
        self._pruned_masks = [m.to(p.device, p.dtype) for p, m in pruned]

    # ---- for subclasses -----------------------------------------------------------------------
    def default_start_value(self) -> float:
        raise NotImplementedError

    def mask_values(self) -> torch.Tensor:
        """The flat mask in [0, 1] the network computes with (differentiable in `variable`)."""
        raise NotImplementedError

    def relaxed_mask(self) -> dict[str, torch.Tensor]:
        """The current relaxed mask per layer (CPU copies, pruned entries 0)."""
        with torch.no_grad():
            return self.layout.to_dict(self.mask_values())

    def variable_values(self) -> dict[str, torch.Tensor]:
        """The trained variable per layer, which the next level starts from."""
        return self.layout.to_dict(self.variable)

    # ---- TrainingStrategy hooks -----------------------------------------------------------------
    def optimizer_settings(self) -> dict[str, Any]:
        """lr / momentum / weight decay of the variable's parameter group; absent keys follow training."""
        h = self.hparams
        group: dict[str, Any] = {"weight_decay": getattr(h, "mask_weight_decay", 0.0)}
        if getattr(h, "mask_lr", None) is not None:
            group["lr"] = h.mask_lr
        if getattr(h, "mask_momentum", None) is not None:
            group["momentum"] = h.mask_momentum
        return group

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.variable], **self.optimizer_settings()}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masked = _MaskedWeights.apply(self.mask_values(), self.layout, *self._weights)
        return functional_call(self.model, dict(zip(self.layout.names, masked)), (x,))

    @torch.no_grad()
    def before_step(self) -> None:
        """Entries pruned at earlier levels get no gradient, whatever a penalty said about them."""
        if self.any_pruned and self.variable.grad is not None:
            self.variable.grad.mul_(self.alive)

    @torch.no_grad()
    def after_step(self) -> None:
        if self._pruned_weights:
            torch._foreach_mul_(self._pruned_weights, self._pruned_masks)

    def state_dict(self) -> dict[str, Any]:
        return {"variable": self.variable.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.variable.copy_(state["variable"].to(self.variable.device, self.variable.dtype))
