"""One flat trainable tensor for the masks of every soft-masked layer, and the masked forward pass.

Keeping all mask entries in ONE parameter (with per-layer views made by a single `split`) means the
projection, the re-zeroing of pruned entries and the penalty are each one op over the whole
network, whatever its size. The masked weights m * theta come from one autograd Function
(`_MaskedWeights`) whose backward writes the mask gradient straight into one flat tensor, and the
network runs on them with each masked weight standing in for its parameter during the call only
(`torch.func.functional_call` when compiling), so the model itself is never modified.
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
    """Where each layer's entries live inside the flat tensor.

    A layer's segment is stored in the same memory order as its weight (e.g. (O, H, W, I) for a
    channels_last convolution weight (O, I, H, W)) and viewed back with a permute, so every per-layer
    view has its weight's layout. Then m * theta, its gradients and the mask gradient are
    single `_foreach` calls over all layers with no re-layout copies, and each gradient has exactly
    its parameter's strides (as DistributedDataParallel's buckets expect). Everything that leaves this
    class (`to_dict`, state dicts) is per layer in standard order; `flatten` goes back.
    """

    def __init__(self, names: list[str], shapes: list[torch.Size], strides: Optional[list[tuple]] = None):
        self.names = names
        self.shapes = [torch.Size(s) for s in shapes]
        self.sizes = [int(s.numel()) for s in self.shapes]
        # each layer's dimensions in memory order (outermost first): views are view + permute, which
        # torch.compile can trace through in-place updates (as_strided views it cannot)
        self.orders = [_memory_order(st) if st is not None else tuple(range(len(sh)))
                       for sh, st in zip(self.shapes, strides or [None] * len(names))]

    @classmethod
    def with_orders(cls, names: list[str], shapes: list[torch.Size], orders: list) -> "FlatLayout":
        """The layout whose layers lie in memory in the given dimension orders (as `orders` records them)."""
        layout = cls(names, shapes)
        layout.orders = [tuple(int(d) for d in order) for order in orders]
        return layout

    @classmethod
    def of(cls, params: dict[str, torch.Tensor], names: list[str]) -> "FlatLayout":
        return cls(names, [params[n].shape for n in names], [params[n].stride() for n in names])

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    @property
    def standard_order(self) -> bool:
        return all(order == tuple(range(len(order))) for order in self.orders)

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer views of `flat` in their weights' memory order (no copy)."""
        out = []
        for chunk, shape, order in zip(torch.split(flat, self.sizes), self.shapes, self.orders):
            if order == tuple(range(len(order))):
                out.append(chunk.view(shape))
            else:
                out.append(chunk.view([shape[d] for d in order]).permute(_inverse(order)))
        return out

    def to_dict(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-layer CPU copies in standard (contiguous) order."""
        return {n: v.detach().cpu().contiguous().clone() for n, v in zip(self.names, self.views(flat))}

    def flatten(self, per_layer: dict[str, torch.Tensor]) -> torch.Tensor:
        """The flat tensor (CPU, float32) holding these per-layer values in this layout's order."""
        return torch.cat([per_layer[n].detach().float().cpu().permute(order).reshape(-1)
                          for n, order in zip(self.names, self.orders)])

    def from_standard_flat(self, flat: torch.Tensor) -> torch.Tensor:
        """A flat tensor written in standard per-layer order (older checkpoints) in this layout's order."""
        chunks = torch.split(flat.detach().float().cpu(), self.sizes)
        return self.flatten({n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes)})


def _memory_order(strides) -> tuple:
    """Dimensions from outermost to innermost in memory (ties, from size-1 dimensions, keep their order)."""
    return tuple(sorted(range(len(strides)), key=lambda d: -strides[d]))


def _inverse(order: tuple) -> tuple:
    inv = [0] * len(order)
    for position, d in enumerate(order):
        inv[d] = position
    return tuple(inv)


class _MaskedWeights(torch.autograd.Function):
    """(flat m, theta_1..theta_k) -> (m_1 * theta_1, ..., m_k * theta_k).

    Autograd's own chain (split, per-layer mul, cat of the per-layer mask gradients) costs three
    extra passes over the mask per step; on LeNet, where each weight is used only 128 x 3 times per
    step, such passes cost as much as the matmuls."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, layout: "FlatLayout", flat_views: Optional[list], *weights: torch.Tensor):
        """`flat_views`: `layout.views(flat)` when the caller holds them already (made once for a
        persistent mask), else None (made here)."""
        views = flat_views if flat_views is not None else layout.views(flat)
        ctx.save_for_backward(flat, *weights)
        ctx.layout, ctx.flat_views = layout, flat_views
        # The views share their weights' strides (see FlatLayout), so products and gradients keep
        # each weight's memory layout: no re-layout copy when a gradient is accumulated.
        return tuple(torch._foreach_mul(list(weights), views))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        flat, *weights = ctx.saved_tensors
        grad_flat = None
        if ctx.needs_input_grad[0]:   # d/dm = g * theta, one product per layer written into one flat tensor
            grad_flat = torch.empty_like(flat)
            for view, g, w in zip(ctx.layout.views(grad_flat), grads, weights):
                torch.mul(g, w, out=view)
        grad_weights: list = [None] * len(weights)
        if any(ctx.needs_input_grad[3:]):
            views = ctx.flat_views if ctx.flat_views is not None else ctx.layout.views(flat)
            products = torch._foreach_mul(list(grads), views)
            grad_weights = [_with_strides_of(g, w) for g, w in zip(products, weights)]
        return (grad_flat, None, None, *grad_weights)


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """(module, attribute) holding the parameter `name` (e.g. 'fc_layers.0.weight')."""
    path, _, attribute = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attribute


def _with_weights(model: nn.Module, owners: list[tuple[nn.Module, str]], tensors, x: torch.Tensor) -> torch.Tensor:
    """model(x) with each owner's parameter replaced by the given tensor for this call only: what
    `functional_call` does for plain parameter names, without its generic bookkeeping (about 65 us
    per LeNet-300-100 forward on one CPU thread, measured). The parameters come back even if forward raises."""
    saved = [module._parameters[attribute] for module, attribute in owners]
    try:
        for (module, attribute), t in zip(owners, tensors):
            module._parameters[attribute] = t
        return model(x)
    finally:
        for (module, attribute), p in zip(owners, saved):
            module._parameters[attribute] = p


def _with_strides_of(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` with exactly `like`'s strides. Elementwise results normalize the strides of size-1
    dimensions (a 1x1 channels_last conv weight), which DDP's gradient buckets reject; re-striding
    those is free, since the memory order is the same."""
    if t.stride() == like.stride():
        return t
    if _order(t) == _order(like):
        return t.as_strided(like.shape, like.stride())
    return torch.empty_strided(like.shape, like.stride(), dtype=t.dtype, device=t.device).copy_(t)


def _order(t: torch.Tensor) -> list:
    return [st for st, n in zip(t.stride(), t.shape) if n > 1]


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
        self.layout = FlatLayout.of(params, names)
        self._weights = [params[n] for n in names]
        device = self._weights[0].device if self._weights else torch.device("cpu")
        dtype = self._weights[0].dtype if self._weights else torch.float32
        alive = self.layout.flatten({n: mask[n] for n in names}) if names else torch.zeros(0)
        self.alive = alive.to(device, dtype)
        self.any_pruned = bool((alive == 0).any())   # else the alive multiplications are skipped
        start = (self.layout.flatten(initial_variable) if initial_variable is not None
                 else torch.full((self.layout.numel,), self.default_start_value()))
        self.variable = nn.Parameter(start.to(device, dtype) * self.alive)
        self._variable_views = self.layout.views(self.variable.detach())   # made once: updates are in place
        self._owners = [_owner(model, n) for n in names]
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
        values = self.mask_values()
        masked = _MaskedWeights.apply(values, self.layout, self._variable_views if values is self.variable else None,
                                      *self._weights)
        if torch.compiler.is_compiling():   # --compile traces the functional form
            return functional_call(self.model, dict(zip(self.layout.names, masked)), (x,))
        return _with_weights(self.model, self._owners, masked, x)

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
        return {"variable": self.layout.to_dict(self.variable), **self.layout_state()}

    def layout_state(self) -> dict[str, Any]:
        """The flat tensor's layer orders, saved with the strategy so that a resume in another memory format
        can reorder the optimizer's state of the flat tensor (`adapt_optimizer_state`)."""
        return {"layout_orders": [list(order) for order in self.layout.orders]}

    def adapt_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """The momentum (and any other per-entry state) of the flat tensor, saved in the saved run's layer
        orders, re-laid in this run's (values per weight unchanged)."""
        saved = getattr(self, "_saved_orders", None)
        if saved is None or [tuple(o) for o in saved] == list(self.layout.orders):
            return
        old = FlatLayout.with_orders(self.layout.names, self.layout.shapes, saved)
        state = optimizer.state.get(self.variable, {})
        for key, value in state.items():
            if torch.is_tensor(value) and value.numel() == self.variable.numel() and value.dim() == 1:
                state[key] = self.layout.flatten(old.to_dict(value)).to(value.device, value.dtype)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Per-layer values (or, from older checkpoints, one flat tensor in standard order)."""
        orders = state.get("layout_orders")
        self._saved_orders = [list(o) for o in orders] if isinstance(orders, (list, tuple)) else None
        value = state["variable"]
        flat = self.layout.flatten(value) if isinstance(value, dict) else self.layout.from_standard_flat(value)
        with torch.no_grad():
            self.variable.copy_(flat.to(self.variable.device, self.variable.dtype))
