"""The standard branches: random pruning, random reinitialization, retraining."""
from __future__ import annotations

from typing import Annotated

import torch

from open_lth_concave.branches.base import BranchContext, register_branch
from open_lth_concave.foundations import layout
from open_lth_concave.foundations.hparams import DatasetHparams, HparamError, TrainingHparams
from open_lth_concave.foundations.step import Step
from open_lth_concave.pruning.mask import Mask, apply_mask
from open_lth_concave.pruning.strategy import layers_to_ignore
from open_lth_concave.training import loop
from open_lth_concave.training.experiment import make_data, make_model


def _trunk_mask(ctx: BranchContext) -> Mask:
    """The trunk level's mask, read back checked (results.py)."""
    from open_lth_concave.results import mask_shapes, read_mask
    shapes = mask_shapes(make_model(ctx.trunk.desc.model_hparams, ctx.trunk.data.spec, ctx.trunk.replicate))
    return read_mask(ctx.trunk.main_dir(ctx.level) / layout.MASK, shapes)


def _shuffle(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flat = values.flatten()
    return flat[torch.randperm(flat.numel(), generator=generator)].view_as(values)


def random_mask(mask: Mask, strategy: str, seed: int, ignore: set[str]) -> Mask:
    """A random mask with the same number of survivors (per layer for layerwise/even)."""
    unknown = sorted(ignore - set(mask))
    if unknown:   # as every pruning strategy refuses them
        raise HparamError(f"invalid --layers_to_ignore {','.join(unknown)}: no such prunable tensor; prunable "
                          f"tensors: {', '.join(mask)}")
    g = torch.Generator().manual_seed(seed)
    names = [n for n in mask if n not in ignore]
    out = Mask({n: v.clone() for n, v in mask.items()})
    if strategy == "identity":
        return out
    if strategy == "layerwise":
        for n in names:
            out[n] = _shuffle(mask[n], g)
    elif strategy == "global":
        flat = torch.cat([mask[n].flatten() for n in names])
        flat = flat[torch.randperm(flat.numel(), generator=g)]
        offset = 0
        for n in names:
            out[n] = flat[offset:offset + mask[n].numel()].view_as(mask[n])
            offset += mask[n].numel()
    elif strategy == "even":
        total = sum(mask[n].numel() for n in names)
        density = sum(float(mask[n].sum()) for n in names) / total
        for n in names:
            keep = round(density * mask[n].numel())
            flat = torch.zeros(mask[n].numel())
            flat[torch.randperm(mask[n].numel(), generator=g)[:keep]] = 1.0
            out[n] = flat.view_as(mask[n])
    else:
        raise HparamError(f"invalid --strategy {strategy!r}; allowed: layerwise, global, even, identity")
    return out


def _start_model(ctx: BranchContext, start_at: str):
    if start_at == "rewind":
        return ctx.trunk.rewind_model()
    if start_at == "end":
        return ctx.trunk.trained_model(ctx.level)
    if start_at == "init":
        return make_model(ctx.trunk.desc.model_hparams, ctx.trunk.data.spec, ctx.trunk.replicate)
    raise HparamError(f"invalid --start_at {start_at!r}; allowed: rewind, init, end")


@register_branch("randomly_prune")
def randomly_prune(ctx: BranchContext,
                   seed: Annotated[int, "Seed of the random mask."],
                   strategy: Annotated[str, "layerwise, global, even or identity."] = "layerwise",
                   start_at: Annotated[str, "Weights to train from: rewind, init or end."] = "rewind",
                   layers_to_ignore: Annotated[str, "Comma-separated tensors kept as in the trunk."] = "") -> None:
    """Train a random mask with the level's number of surviving weights."""
    mask = random_mask(_trunk_mask(ctx), strategy, seed, _ignore(layers_to_ignore))
    model = _start_model(ctx, start_at)
    apply_mask(model, mask)
    mask.save(ctx.output_dir / layout.MASK)
    ctx.trunk.train_from_rewind(model, mask, ctx.output_dir, label=f"level {ctx.level} randomly_prune")


def _ignore(text: str) -> set[str]:
    return layers_to_ignore(text)


@register_branch("randomly_reinitialize")
def randomly_reinitialize(ctx: BranchContext,
                          start_at_step_zero: Annotated[bool, "Train from step 0 instead of the rewind step."] = False,
                          seed: Annotated[int, "Seed of the fresh initialization (default: replicate + 10000)."] = -1) -> None:
    """Train the level's mask on freshly initialized weights."""
    mask = _trunk_mask(ctx)
    model = make_model(ctx.trunk.desc.model_hparams, ctx.trunk.data.spec,
                       seed if seed >= 0 else ctx.trunk.replicate + 10000)
    apply_mask(model, mask)
    mask.save(ctx.output_dir / layout.MASK)
    _train(ctx, model, mask, ctx.trunk.desc.training_hparams, ctx.trunk.data, start_at_step_zero, "randomly_reinitialize")


@register_branch("retrain", extra_groups={"retrain_dataset": (DatasetHparams, "dataset_hparams"),
                                          "retrain_training": (TrainingHparams, "training_hparams")})
def retrain(ctx: BranchContext,
            start_at_step_zero: Annotated[bool, "Train from step 0 instead of the rewind step."] = False) -> None:
    """Retrain the level's ticket from the rewind point with its own dataset and training settings."""
    mask = _trunk_mask(ctx)
    model = ctx.trunk.rewind_model() if not start_at_step_zero else make_model(
        ctx.trunk.desc.model_hparams, ctx.trunk.data.spec, ctx.trunk.replicate)
    apply_mask(model, mask)
    mask.save(ctx.output_dir / layout.MASK)
    dataset, training = ctx.extra_groups["retrain_dataset"], ctx.extra_groups["retrain_training"]
    data = make_data(dataset, training, ctx.trunk.replicate, ctx.trunk.platform)
    _train(ctx, model, mask, training, data, start_at_step_zero, "retrain")


def _train(ctx: BranchContext, model, mask: Mask, training: TrainingHparams, data, from_zero: bool, label: str) -> None:
    ipe = data.iterations_per_epoch
    end = Step.from_str(training.training_steps, ipe)
    start = Step.zero(ipe) if from_zero else Step(min(ctx.trunk.start_step.iteration, end.iteration), ipe)
    job = loop.TrainJob(ctx.output_dir, model, mask, data.train, data.test, training, start, end, ctx.trunk.platform,
                        quiet=ctx.trunk.quiet, evaluate_only_at_end=ctx.trunk.evaluate_only_at_end,
                        label=f"level {ctx.level} {label}")
    loop.train(job)
