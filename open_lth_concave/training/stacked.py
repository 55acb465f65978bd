"""Many small runs at once: K replicates of one architecture trained together in one process.

One LeNet or ResNet-20 leaves a GPU mostly idle. Stacking the K models' parameters along a new
leading dimension and running them with `torch.func.vmap(functional_call)` turns K small matmuls
or convolutions into one batched call per layer. Each replicate keeps its own initialization, its
own data order and augmentation (its own loader) and its own mask; SGD and Adam act elementwise, so
one optimizer over the stacked tensors is exactly K independent optimizers. Batch-norm statistics
are stacked buffers, updated per replicate.

The K replicates are one module (`Stacked`) trained by the training loop itself (`loop.run_steps`)
with the `standard` strategy (pruned weights held at zero): the same step, NaN stop, checkpoint format
and schedule as a single run, evaluated only at the end. The task loss is the sum over replicates of
each one's mean loss, so replicate k's gradient is its own loss's.
`open_lth train --replicates_together K` uses it (see `training/runner.py`), and it can be called from
Python for sweeps over seeds. With `checkpoint`, the stacked state is saved at each epoch boundary and
an interrupted call resumes from it. `tests/test_stacked.py` checks it against K separate
`loop.train` runs, an interrupted call against an uninterrupted one, and a NaN against a single run's.
"""
from __future__ import annotations

import copy
import time
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
from open_lth_concave.training import checkpoint as checkpoints
from open_lth_concave.training.guard import NanGuard
from open_lth_concave.training.loop import Evaluation, Run, autocast_context, autocast_dtype, run_steps
from open_lth_concave.training.metric_logger import MetricLogger
from open_lth_concave.training.optimizers import build_optimizer, lr_factor_fn
from open_lth_concave.training.progress import Progress
from open_lth_concave.training.schedule import Schedule
from open_lth_concave.training.strategy import Standard


@dataclass
class StackedResult:
    models: list[nn.Module]          # the trained replicates, as ordinary modules on the CPU
    test_accuracy: list[float]
    test_loss: list[float]


def _key(name: str) -> str:
    """A stacked tensor's attribute name ("fc1.weight" -> "fc1-weight": module attributes hold no dots)."""
    return name.replace(".", "-")


class Stacked(nn.Module):
    """K replicates as one module: each parameter and buffer stacked along a new first dimension.
    `forward(x)` takes one batch per replicate, x[k] for replicate k ([K, B, ...] -> [K, B, classes]);
    `forward_shared(x)` runs every replicate on the same batch ([B, ...] -> [K, B, classes])."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        params, buffers = stack_module_state(models)      # {name: [K, ...]}
        trainable = {n for n, p in models[0].named_parameters() if p.requires_grad}
        self.param_names, self.buffer_names = list(params), list(buffers)
        for n, p in params.items():
            self.register_parameter(_key(n), nn.Parameter(p.detach(), requires_grad=n in trainable))
        for n, b in buffers.items():
            self.register_buffer(_key(n), b)
        skeleton = copy.deepcopy(models[0]).to("meta")     # structure only; the numbers are this module's
        self.__dict__["skeleton"] = skeleton               # not a submodule: its meta tensors are not state
        self._one = lambda p, b, x: functional_call(skeleton, (p, b), (x,))

    def train(self, mode: bool = True) -> "Stacked":
        super().train(mode)
        self.skeleton.train(mode)
        return self

    def _state(self) -> tuple[dict, dict]:
        return ({n: getattr(self, _key(n)) for n in self.param_names},
                {n: getattr(self, _key(n)) for n in self.buffer_names})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return vmap(self._one)(*self._state(), x)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        return vmap(self._one, in_dims=(0, 0, None))(*self._state(), x)

    def replicate_state(self, k: int) -> dict[str, torch.Tensor]:
        """Replicate k's state dict (names as in the original model), on the CPU."""
        return {n: getattr(self, _key(n))[k].detach().cpu().contiguous() for n in self.param_names + self.buffer_names}


class _StackedLoader:
    """The K replicates' train loaders as one: batch i of each, stacked ([K, B, ...])."""

    def __init__(self, loaders: list, iterations_per_epoch: int):
        self.loaders, self.iterations_per_epoch = loaders, iterations_per_epoch

    def batches(self, epoch: int, start_iteration: int = 0):
        for batches in zip(*(loader.batches(epoch, start_iteration) for loader in self.loaders)):
            yield torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])


class _StackedEvaluation(Evaluation):
    """The loop's evaluation with one result per replicate (kept here, not in the run's logger)."""

    def __init__(self, model: Stacked, test_loader, device: torch.device, precision, guard: NanGuard, k: int):
        super().__init__(model, self._measure, MetricLogger(), None, None, guard)
        self.test_loader, self.device, self.precision, self.k = test_loader, device, precision, k
        self.results: dict[int, tuple[list[float], list[float], int]] = {}

    @torch.no_grad()
    def _measure(self):
        correct = torch.zeros(self.k, device=self.device)
        total_loss = torch.zeros(self.k, device=self.device)
        n = 0
        for x, y in self.test_loader.batches(0):
            with autocast_context(self.device, self.precision):
                logits = self.model.forward_shared(x).float()            # [K, B, classes]
            total_loss += F.cross_entropy(logits.transpose(1, 2), y.expand(self.k, -1), reduction="none").sum(1)
            correct += (logits.argmax(-1) == y).sum(1)
            n += y.numel()
        return (total_loss / n).tolist(), (correct / n).tolist(), n

    def done(self, at: Step) -> bool:
        return at.iteration in self.results

    def record(self, at: Step, loss: list[float], acc: list[float], n: int) -> None:
        self.results[at.iteration] = (loss, acc, n)


def _task_loss(logits: torch.Tensor, y: torch.Tensor, at: Step) -> torch.Tensor:
    """Sum over replicates of each one's mean loss: replicate k's gradient is its own loss's."""
    logits = logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum") / y.shape[1]


def train_stacked(models: list[nn.Module], train_loaders: list, test_loader, hparams: TrainingHparams,
                  end_step: Step, platform: Optional[Platform] = None,
                  masks: Optional[list[Mask]] = None, checkpoint: Optional[Path] = None,
                  label: str = "stacked replicates") -> StackedResult:
    """Train `models[k]` on `train_loaders[k]` (k = 0..K-1) from step 0 to `end_step`, all at once.
    A NaN or infinite loss stops it as it stops a single run (`guard.TrainingDiverged`); nothing is returned."""
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
    model = Stacked(models)
    mask = Mask()
    if masks is not None:
        for name in masks[0]:
            m = torch.stack([mask_k[name] for mask_k in masks]).to(device, getattr(model, _key(name)).dtype)
            if not bool(m.all()):
                mask[_key(name)] = m
    with torch.no_grad():
        for name, m in mask.items():
            getattr(model, name).mul_(m)

    def rebuild():
        strategy = Standard(model, mask)
        return strategy, build_optimizer(model, hparams, strategy.param_groups(), fused=platform.fused_optimizer)
    strategy, optimizer = rebuild()
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    start, end = Step.zero(ipe), Step(end_step.iteration, ipe)
    state, strategy, optimizer = checkpoints.resume(checkpoint, device, model, optimizer, strategy, start, end, label,
                                                    rebuild)
    step, elapsed, logger = start, 0.0, MetricLogger()
    if state is not None:
        step, elapsed = Step(int(state["iteration"]), ipe), float(state["elapsed"])
        logger = MetricLogger.from_str(state["logger"])
    t0 = time.time() - elapsed
    precision = autocast_dtype(platform, hparams)
    guard = NanGuard(label, device, logger)
    evaluation = _StackedEvaluation(model, test_loader, device, precision, guard, len(models))
    run = Run(model, strategy, optimizer, base_lrs, lr_factor_fn(hparams, ipe), model, _task_loss,
              _StackedLoader(train_loaders, ipe), precision, Schedule(start, end, "end"), evaluation, guard,
              checkpoints.Checkpointer(checkpoint, model, optimizer, strategy, logger, t0),
              Progress(label, step, end, t0=t0, quiet=True), label)
    step = run_steps(run, step)
    if checkpoint is not None:
        io.remove(checkpoint)
    trained = []
    for i, original in enumerate(models):
        out = copy.deepcopy(original).cpu()
        out.load_state_dict(model.replicate_state(i))
        trained.append(out)
    loss, acc, _ = evaluation.results[step.iteration]
    return StackedResult(trained, acc, loss)
