"""Training strategy `soft_mask`: train weights theta and a relaxed mask m in [0,1] jointly (Eq. 2).

The network computes with m * theta; the objective is the task loss + lambda * sum_i r(m_i) over
surviving entries (r from `regularizers.py`); after every optimizer step m is projected onto [0,1]
(projected gradient, Section III-B). Entries pruned at earlier levels stay exactly 0.
The penalty's value is never needed inside a step (only its gradient, and its value at evaluation
points for the log), so the step adds lambda * r'(m) to the mask gradient directly (`before_step`):
two or three passes over the mask instead of autograd through the value and back.
On the CPU with SGD (the usual search), once the loop has bound the optimizer, the mask's gradient,
penalty, momentum, update and projection and theta's gradient are one C loop instead (`native_step.py`;
the same numbers to float tolerance; `--native_kernels=off` or no C compiler: the eager step above).
The pruning strategies `concave_<regularizer>` (`strategies.py`) run this strategy as their search.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from open_lth_concave.concave.flat_mask import FlatMaskStrategy, _with_strides_of, _with_weights
from open_lth_concave.concave.native_step import MaskStep
from open_lth_concave.concave.mask_hparams import DEFAULT_THRESHOLD, MaskOptimizerHparams, with_default
from open_lth_concave.concave.regularizers import MaskPenalty, Regularizer
from open_lth_concave.concave.regularizers import registry as regularizers
from open_lth_concave.concave.settle import SettleStop
from open_lth_concave.concave.target import SparsityTarget
from open_lth_concave.foundations import distributed
from open_lth_concave.foundations.hparams import Hparams, hp
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.training.strategy import registry as training_strategies


def _penalty_fields() -> tuple[type, ...]:
    """The hyperparameter classes of the regularizers registered when this module is imported (their own
    fields, e.g. epsilon, become soft_mask's flags; a regularizer registered later keeps its defaults here)."""
    classes = [regularizers.get(name).hparams_cls for name in regularizers.list()]
    return tuple(dict.fromkeys(c for c in classes if dataclasses.fields(c)))


@dataclass(kw_only=True)
class SoftMaskHparams(*_penalty_fields(), MaskOptimizerHparams):
    """What the soft-mask search needs; filled from a concave pruning strategy's hyperparameters (resolved:
    the mask fields are the mixin's, with the two derived defaults declared as the values they resolve to),
    and the penalty's own fields (each regularizer's, e.g. --epsilon for log)."""
    _group_name: ClassVar[str] = "Soft Mask Hyperparameters"

    regularizer: str = hp("log", "The concave penalty r (a registered regularizer).")
    regularization_lambda: Optional[float] = hp(None, "lambda of Eq. 2 (default: the regularizer's own).",
                                                range=">= 0")
    threshold: float = with_default("threshold", DEFAULT_THRESHOLD["paper"],
                                    "alpha: only used here for the logged fraction of masks >= alpha.")
    mask_lr: Optional[float] = with_default("mask_lr", None, "Mask learning rate (default: the training lr).")
    mask_weight_decay: float = with_default("mask_weight_decay", 0.0, "Mask weight decay (0 = exactly Eq. 2; the "
                                            "concave strategies pass the training weight decay by default, as the "
                                            "paper's optimizer does).")
    pruning_layers_to_ignore: Optional[str] = hp(None, "Comma-separated tensors that keep plain weights.")

    def mask_penalty(self) -> MaskPenalty:
        """The penalty these fields name (the regularizer with its own fields' values here)."""
        return MaskPenalty.resolve(self.regularizer, self.regularization_lambda, self.to_dict())

    def flags_without_effect(self) -> dict[str, str]:
        """Another regularizer's fields do nothing with this one (the command line refuses them when given)."""
        own = {f.name for f in dataclasses.fields(regularizers.get(self.regularizer).hparams_cls)} \
            if self.regularizer in regularizers.list() else set()
        return {f.name: f"it belongs to another regularizer than --regularizer {self.regularizer}"
                for base in _penalty_fields() for f in dataclasses.fields(base) if f.name not in own}


@training_strategies.register("soft_mask")
class SoftMask(FlatMaskStrategy):
    """Relaxed mask m in [0,1], concave penalty, projection after each step."""
    hparams_cls = SoftMaskHparams

    def __init__(self, model: nn.Module, mask: Mask, hparams: Optional[Hparams] = None, *,
                 mask_penalty: Optional[MaskPenalty] = None,
                 initial_mask: Optional[dict[str, torch.Tensor]] = None,
                 target: Optional[SparsityTarget] = None, settle: Optional[SettleStop] = None):
        super().__init__(model, mask, hparams, initial_variable=initial_mask)
        h = self.hparams
        # one resolved penalty: given by a search (`concave_<regularizer>`, with the regularizer's own
        # hyperparameters), else the one the hparams name; the hparams must then name the same one
        named = h.mask_penalty()
        penalty = mask_penalty if mask_penalty is not None else named
        declared = {f.name for f in dataclasses.fields(h)}     # a late regularizer's own fields are not flags here
        own = {f.name: getattr(penalty.regularizer.hparams, f.name) for f in dataclasses.fields(penalty.regularizer.hparams)
               if f.name in declared}
        if (penalty.name, penalty.lam) != (named.name, named.lam) or \
                any(getattr(named.regularizer.hparams, k) != v for k, v in own.items()):
            raise ValueError(f"soft_mask hparams name the penalty {named.name} (lambda {named.lam}, "
                             f"{named.regularizer.hparams}) but were given {penalty.name} (lambda {penalty.lam}, "
                             f"{penalty.regularizer.hparams})")
        self.mask_penalty = penalty
        self.regularizer: Regularizer = penalty.regularizer
        self.lam = penalty.lam
        # With a sparsity target the mask's weight decay is applied here (scaled with the penalty)
        # instead of by the optimizer; for SGD and Adam that is the same update (decay joins the gradient).
        self.target = target
        self.decay = float(h.mask_weight_decay or 0.0) if target is not None else 0.0
        if target is not None:
            target.bind(self.alive > 0, self._shrinkage_at)
        self.settle = settle
        if settle is not None:
            settle.bind(self.alive > 0)
        with torch.no_grad():
            self.variable.clamp_(0.0, 1.0)
        # the one-pass CPU step, once bind_optimizer has found it usable
        self._native: Optional[MaskStep] = None
        self._leaves: Optional[list[torch.Tensor]] = None
        self._stepped = False
        self._buf_source: Optional[torch.Tensor] = None

    def _shrinkage_at(self, m: float) -> float:
        """lambda r'(m) + decay m at one mask value: the shrinkage one unit of target pressure applies."""
        return self.lam * float(self.regularizer.derivative(torch.tensor([m]))[0]) + self.decay * m

    def optimizer_settings(self) -> dict[str, Any]:
        settings = super().optimizer_settings()
        if self.target is not None:
            settings["weight_decay"] = 0.0
        return settings

    def default_start_value(self) -> float:
        return self.hparams.initial_mask_value

    def mask_values(self) -> torch.Tensor:
        return self.variable

    # ---- the one-pass CPU step (native_step.py) ---------------------------------------------------
    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Use the one-pass step when it computes exactly what the eager step does: plain SGD holding the
        mask, float32 on the CPU, one process, a regularizer with a C derivative, a compiler, and each weight
        with its mask view's strides (the views are dense segments of the flat mask, so the weight is too)."""
        self._native = None
        group = next((g for g in optimizer.param_groups if any(p is self.variable for p in g["params"])), None)
        tensors = [self.variable, *self._weights]
        if (group is None or type(optimizer) is not torch.optim.SGD or group.get("maximize")
                or group.get("differentiable") or distributed.world_size() > 1 or not self._weights
                or any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors)
                or any(w.stride() != v.stride() for w, v in zip(self._weights, self._variable_views))):
            return
        step = MaskStep.for_regularizer(self.regularizer)
        if step is not None:
            self._native, self._optimizer, self._group = step, optimizer, group
            self._alive_views = self.layout.views(self.alive) if self.any_pruned else [None] * len(self._weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._native is None or not torch.is_grad_enabled() or torch.compiler.is_compiling():
            return super().forward(x)
        # the masked weights as leaves: backward leaves dL/d(m * theta) in their .grad, and before_step
        # turns it into both gradients and the mask's whole update in one pass
        with torch.no_grad():
            leaves = torch._foreach_mul(self._weights, self._variable_views)
        for leaf in leaves:
            leaf.requires_grad_()
        self._leaves = leaves
        return _with_weights(self.model, self._owners, leaves, x)

    @torch.no_grad()
    def _native_step(self, leaves: list[torch.Tensor]) -> None:
        group, state = self._group, self._optimizer.state[self.variable]
        mu, buf, first = float(group["momentum"]), None, False
        if mu != 0:
            buf = state.get("momentum_buffer")
            first = buf is None
            if first:
                buf = state["momentum_buffer"] = torch.empty_like(self.variable)
            if buf is not self._buf_source:
                self._buf_source, self._buf_views = buf, self.layout.views(buf)
        scale = self.target.scale if self.target is not None else 1.0
        s, wd = scale * self.lam, scale * self.decay + float(group["weight_decay"])
        for leaf, weight, m, b, alive in zip(leaves, self._weights, self._variable_views,
                                             self._buf_views if buf is not None else [None] * len(leaves),
                                             self._alive_views):
            g = leaf.grad
            if g is None:
                g = torch.zeros_like(weight)
            elif g.stride() != weight.stride():
                g = _with_strides_of(g, weight)
            self._native.run(g, weight, m, b, alive, s, wd, mu, float(group["dampening"]), first,
                             bool(group["nesterov"]), float(group["lr"]))
            if weight.grad is None:
                weight.grad = g          # now g * m: theta's gradient
            else:
                weight.grad.add_(g)

    @torch.no_grad()
    def _gradients_from(self, leaves: list[torch.Tensor]) -> None:
        """The eager step's gradients from the leaves (when something else gave the mask a gradient too)."""
        grad = self.variable.grad
        for leaf, weight, m, gv in zip(leaves, self._weights, self._variable_views, self.layout.views(grad)):
            if leaf.grad is None:
                continue
            gv.addcmul_(leaf.grad, weight)
            if weight.grad is None:
                weight.grad = leaf.grad * m
            else:
                weight.grad.addcmul_(leaf.grad, m)

    @torch.no_grad()
    def before_step(self) -> None:
        leaves, self._leaves = self._leaves, None
        self._stepped = False
        if leaves is not None:
            if self.variable.grad is None:   # the usual case: the mask's whole update, here, in one pass
                self._native_step(leaves)
                self._stepped = True
                return
            self._gradients_from(leaves)
        scale = self.target.scale if self.target is not None else 1.0
        if self.lam != 0 or self.decay != 0:
            if self.variable.grad is None:
                self.variable.grad = torch.zeros_like(self.variable)
            if self.lam != 0:
                self.regularizer.add_derivative_(self.variable.grad, self.variable, scale * self.lam)
            if self.decay != 0:
                self.variable.grad.add_(self.variable, alpha=scale * self.decay)
        super().before_step()

    @torch.no_grad()
    def after_step(self) -> None:
        # Projection onto [0,1] (done by the one-pass step already). Pruned entries start at 0 and get
        # exactly zero gradient (before_step), so SGD (momentum, decay) leaves them at exactly 0.
        if not self._stepped:
            self.variable.clamp_(0.0, 1.0)
        self._stepped = False
        if self.target is not None:
            self.target.observe(self.variable)
        super().after_step()

    def should_stop(self, iteration: int) -> bool:
        """--early_stop=settled: end the search once the would-be-pruned set has settled (settle.py)."""
        return self.settle is not None and self.settle.is_point(iteration) and \
            self.settle.observe(iteration, self.variable)

    @torch.no_grad()
    def metrics(self) -> dict[str, float]:
        m, alive = self.variable, self.alive
        n = alive.sum().clamp_min(1)
        values = {"mask_regularizer": float(self.regularizer.value(m).sum()),
                  "mask_mean": float(m.sum() / n),
                  "mask_above_threshold": float(((m >= self.hparams.threshold) * alive).sum() / n)}
        if self.target is not None:
            values["shrinkage_scale"] = self.target.scale
        return values

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"relaxed_mask": self.layout.to_dict(self.variable), **self.layout_state()}
        if self.target is not None:
            state["target"] = self.target.state_dict()
        if self.settle is not None:
            state["settle"] = self.settle.state_dict()
        return state

    def state_problem(self, state: dict[str, Any]) -> Optional[str]:
        """A relaxed mask outside [0, 1] (the projection keeps it inside) or a negative target pressure."""
        relaxed = state.get("relaxed_mask") if isinstance(state, dict) else None
        if not isinstance(relaxed, dict) or not all(isinstance(v, torch.Tensor) for v in relaxed.values()):
            return "the training strategy's state has no relaxed mask"
        outside = next((n for n, v in relaxed.items() if not bool(((v >= 0) & (v <= 1)).all())), None)
        if outside is not None:
            return f"its relaxed mask holds values outside [0, 1] ({outside})"
        target = state.get("target")
        if isinstance(target, dict) and not (isinstance(target.get("pressure"), (int, float))
                                             and 0 <= target["pressure"] < float("inf")):
            return f"its sparsity target's pressure is {target.get('pressure')!r}, not a number >= 0"
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict({"variable": state["relaxed_mask"], "layout_orders": state.get("layout_orders")})
        if self.target is not None and "target" in state:
            self.target.load_state_dict(state["target"])
        if self.settle is not None and "settle" in state:
            self.settle.load_state_dict(state["settle"])
