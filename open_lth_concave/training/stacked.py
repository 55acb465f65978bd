"""Many small runs at once: K replicates of one architecture trained together in one process.

One LeNet or ResNet-20 leaves a GPU mostly idle. Stacking the K models' parameters along a new
leading dimension and running them with `torch.func.vmap(functional_call)` turns K small matmuls
or convolutions into one batched call per layer. Each replicate keeps its own initialization, its
own data order and augmentation (its own loader) and its own mask; SGD and Adam act elementwise, so
one optimizer over the stacked tensors is exactly K independent optimizers. Batch-norm statistics
are stacked buffers, updated per replicate.

This is the training step of `loop.train` with the `standard` strategy (pruned weights held at zero).
`open_lth train --replicates_together K` uses it (see `training/runner.py`), and it can be called from
Python for sweeps over seeds. With `checkpoint`, the stacked state is saved at each epoch boundary and
an interrupted call resumes from it. `tests/test_stacked.py` checks it against K separate
`loop.train` runs and an interrupted call against an uninterrupted one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from open_lth_concave.foundations import io
from open_lth_concave.foundations.hparams import TrainingHparams
from open_lth_concave.foundations.step import Step
from open_lth_concave.platform import Platform
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.training.loop import autocast_context, autocast_dtype
from open_lth_concave.training.optimizers import lr_factor_fn, optimizer_for_groups, set_lr


@dataclass
class StackedResult:
    models: list[nn.Module]          # the trained replicates, as ordinary modules on the CPU
    test_accuracy: list[float]
    test_loss: list[float]


def train_stacked(models: list[nn.Module], train_loaders: list, test_loader, hparams: TrainingHparams,
                  end_step: Step, platform: Optional[Platform] = None,
                  masks: Optional[list[Mask]] = None, checkpoint: Optional[Path] = None) -> StackedResult:
    """Train `models[k]` on `train_loaders[k]` (k = 0..K-1) from step 0 to `end_step`, all at once."""
    if not models or len(models) != len(train_loaders) or (masks is not None and len(masks) != len(models)):
        raise ValueError(f"need one train loader (and mask) per model: {len(models)} models, "
                         f"{len(train_loaders)} loaders, {len(masks) if masks is not None else 'no'} masks")
    ipe = {loader.iterations_per_epoch for loader in train_loaders}
    if len(ipe) != 1:
        raise ValueError(f"all replicates need the same iterations per epoch, got {sorted(ipe)}")
    ipe = ipe.pop()
    platform = platform or Platform()
    device = platform.torch_device
    models = [m.to(device) for m in models]
    params, buffers = stack_module_state(models)      # {name: [K, ...]}
    params = {n: nn.Parameter(p.detach()) for n, p in params.items()}
    skeleton = copy.deepcopy(models[0]).to("meta")    # structure only; the numbers come from `params`
    trainable = {n for n, p in models[0].named_parameters() if p.requires_grad}
    stacked_masks = {}
    if masks is not None:
        for name in masks[0]:
            m = torch.stack([mask[name] for mask in masks]).to(device, params[name].dtype)
            if not bool(m.all()):
                stacked_masks[name] = m
    with torch.no_grad():
        for name, m in stacked_masks.items():
            params[name].mul_(m)

    def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(skeleton, (p, b), (x,))

    forward = vmap(one)
    evaluate = vmap(one, in_dims=(0, 0, None))
    optimizer = optimizer_for_groups([{"params": [params[n] for n in params if n in trainable]}], hparams,
                                     fused=platform.fused_optimizer)
    for n in params:
        params[n].requires_grad_(n in trainable)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    lr_factor = lr_factor_fn(hparams, ipe)
    dtype = autocast_dtype(platform, hparams)
    k = len(models)

    step = _resume(checkpoint, params, buffers, optimizer, device)
    skeleton.train()
    while step < end_step.iteration:
        epoch = step // ipe
        if checkpoint is not None and step > 0:
            io.save_torch({"params": {n: t.detach().cpu() for n, t in params.items()},
                           "buffers": {n: t.cpu() for n, t in buffers.items()},
                           "optimizer": optimizer.state_dict(), "iteration": step}, checkpoint)
        streams = [loader.batches(epoch) for loader in train_loaders]
        for batches in zip(*streams):
            if step >= end_step.iteration:
                break
            x = torch.stack([b[0] for b in batches])
            y = torch.stack([b[1] for b in batches])
            set_lr(optimizer, base_lrs, lr_factor(step))
            with autocast_context(device, dtype):
                logits = forward(params, buffers, x).float()
            # sum over replicates of each one's mean loss: replicate k's gradient is its own loss's
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum") / y.shape[1]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if stacked_masks:
                with torch.no_grad():
                    torch._foreach_mul_([params[n] for n in stacked_masks], list(stacked_masks.values()))
            step += 1

    skeleton.eval()
    correct = torch.zeros(k, device=device)
    total_loss = torch.zeros(k, device=device)
    n = 0
    with torch.no_grad():
        for x, y in test_loader.batches(0):
            with autocast_context(device, dtype):
                logits = evaluate(params, buffers, x).float()            # [K, B, classes]
            total_loss += F.cross_entropy(logits.transpose(1, 2), y.expand(k, -1), reduction="none").sum(1)
            correct += (logits.argmax(-1) == y).sum(1)
            n += y.numel()
    if checkpoint is not None:
        io.remove(checkpoint)
    trained = []
    for i, model in enumerate(models):
        state = {name: t[i].detach().cpu().contiguous() for name, t in {**params, **buffers}.items()}
        out = copy.deepcopy(model).cpu()
        out.load_state_dict(state)
        trained.append(out)
    return StackedResult(trained, (correct / n).tolist(), (total_loss / n).tolist())


def _resume(checkpoint: Optional[Path], params: dict, buffers: dict, optimizer, device: torch.device) -> int:
    """Load the stacked state saved at an epoch boundary; the step to continue from (0: fresh start)."""
    if checkpoint is None or not Path(checkpoint).exists():
        return 0
    try:
        state = io.load_torch(checkpoint, map_location=device)
        shapes_ok = (isinstance(state, dict) and set(state.get("params", {})) == set(params)
                     and all(state["params"][n].shape == params[n].shape for n in params)
                     and set(state.get("buffers", {})) == set(buffers))
        if not shapes_ok:
            raise io.CorruptFileError(f"cannot read {checkpoint}: not a checkpoint of these stacked models")
    except io.CorruptFileError as e:
        print(f"warning: {e}; starting the stacked run from its start", flush=True)
        io.remove(checkpoint)
        return 0
    with torch.no_grad():
        for n, t in params.items():
            t.copy_(state["params"][n])
        for n, t in buffers.items():
            t.copy_(state["buffers"][n])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["iteration"])
