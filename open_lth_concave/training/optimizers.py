"""Optimizer and learning-rate schedule from TrainingHparams."""
from __future__ import annotations

from typing import Any

import torch

from open_lth_concave.foundations.hparams import TrainingHparams
from open_lth_concave.foundations.step import Step
from open_lth_concave.platform.optim_start import skip_dynamo_import, step  # noqa: F401  (step: the loop's)


def build_optimizer(model: torch.nn.Module, hp: TrainingHparams, extra_groups: list[dict[str, Any]],
                    fused: bool = False) -> torch.optim.Optimizer:
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}] + extra_groups
    return optimizer_for_groups(groups, hp, fused)


def optimizer_for_groups(groups: list[dict[str, Any]], hp: TrainingHparams, fused: bool = False) -> torch.optim.Optimizer:
    """The optimizer TrainingHparams describe, over explicit parameter groups."""
    skip_dynamo_import()
    wd = hp.weight_decay or 0.0
    kwargs: dict[str, Any] = {"fused": True} if fused else {}
    if hp.optimizer_name == "sgd":
        momentum = hp.nesterov_momentum or hp.momentum
        return torch.optim.SGD(groups, lr=hp.lr, momentum=momentum, weight_decay=wd,
                               nesterov=bool(hp.nesterov_momentum), **kwargs)
    if hp.optimizer_name == "adam":
        return torch.optim.Adam(groups, lr=hp.lr, weight_decay=wd, **kwargs)
    raise ValueError(f"unknown optimizer {hp.optimizer_name!r}; valid: sgd, adam")


def lr_factor_fn(hp: TrainingHparams, iterations_per_epoch: int):
    """factor(i) for update i: gamma^(milestones passed) x min(1, i / warmup)."""
    milestones = sorted(Step.from_str(s.strip(), iterations_per_epoch).iteration
                        for s in (hp.milestone_steps or "").split(",") if s.strip())
    warmup = Step.from_str(hp.warmup_steps, iterations_per_epoch).iteration if hp.warmup_steps else 0
    gamma = hp.gamma if hp.gamma is not None else 1.0

    def factor(i: int) -> float:
        passed = sum(1 for m in milestones if i >= m)
        w = min(1.0, i / warmup) if warmup else 1.0
        return (gamma ** passed) * w
    return factor


def set_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> None:
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
