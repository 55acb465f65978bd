"""A training run's checkpoint: written at epoch boundaries and on a stop signal, read back (checked) to resume.

It holds the model's state, the optimizer's and the strategy's, the next step, the seconds spent so far
and the metric logger; single runs and stacked replicates (whose model is the stacked module) write the
same format. A checkpoint that is damaged, of another model, outside this run's steps or not this run's
optimizer or strategy state, or one whose states are not finite, out of their domain or out of step with
its logger, is set aside (`checkpoint.rejected.pth`, the last one kept) with a warning naming it, and the
run starts again from its start point.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from open_lth_concave.foundations import distributed, io, layout, validate
from open_lth_concave.foundations.step import Step
from open_lth_concave.training.metric_logger import MetricLogger
from open_lth_concave.training.progress import warn
from open_lth_concave.training.strategy import TrainingStrategy

KEYS = {"model", "optimizer", "strategy", "iteration", "elapsed", "logger"}


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@dataclass
class Checkpointer:
    """Writes the checkpoint of one run to `path` (None: the run keeps none)."""
    path: Optional[Path]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    strategy: TrainingStrategy
    logger: MetricLogger
    t0: float                          # time.time() at the run's start, resumed sessions included

    def save(self, at: Step) -> None:
        if self.path is None:
            return
        distributed.broadcast_buffers(self.model)
        io.save_torch({"model": cpu_state(self.model), "optimizer": self.optimizer.state_dict(),
                       "strategy": self.strategy.state_dict(), "iteration": at.iteration,
                       "elapsed": time.time() - self.t0, "logger": str(self.logger)}, self.path)


def logger_problem(logger: MetricLogger, iteration: int, start: Step) -> str:
    """A checkpoint's logger must end where its step is: nothing logged after it, and the training loss
    logged at the last epoch boundary at or before it (every boundary logs it before the checkpoint)."""
    late = [(name, it) for name, it, _ in logger.rows if it > iteration]
    if late:
        return f"its logger has {late[0][0]} at iteration {late[0][1]}, after its step {iteration}"
    boundary = iteration - iteration % start.iterations_per_epoch
    if boundary > start.iteration:
        last = max((it for it, _ in logger.get("train_loss")), default=None)
        if last != boundary:
            return (f"its logger's last training loss is at iteration {last}, not at the epoch boundary {boundary} "
                    f"before its step {iteration}")
    return ""


def load(path: Path, device: torch.device, model: nn.Module, start: Step, end: Step, label: str) -> Optional[dict]:
    """The checkpoint's contents, or None (fresh start) when there is none or it is damaged: it must
    hold this model's state, a step inside this run and a readable logger."""
    if not path.exists():
        return None
    try:
        state = io.load_torch(path, map_location=device)
        if not isinstance(state, dict) or not KEYS <= set(state):
            raise io.CorruptFileError(f"cannot read {path}: not a training checkpoint")
        validate.tensors(state["model"], path, model.state_dict(), "model state")
        if not validate.number(state["iteration"], integer=True, minimum=start.iteration) or \
                state["iteration"] >= end.iteration or not validate.number(state["elapsed"], minimum=0) or \
                not isinstance(state["logger"], str):
            raise io.CorruptFileError(f"cannot use {path}: its step or logger is not one of this run's")
        try:
            logger = MetricLogger.from_str(state["logger"])
        except ValueError:
            raise io.CorruptFileError(f"cannot use {path}: its logger is damaged") from None
        problem = logger_problem(logger, int(state["iteration"]), start)
        if problem:
            raise io.CorruptFileError(f"cannot use {path}: {problem}")
        validate.all_finite(state["optimizer"], path, "optimizer state")
        validate.all_finite(state["strategy"], path, "training strategy's state")
        return state
    except io.CorruptFileError as e:
        aside = io.set_aside(path, layout.REJECTED_CHECKPOINT)
        warn(f"{label}: {e}; set aside as {aside.name}, starting this run again from its start point")
        return None


def strides_of_parameters(optimizer: torch.optim.Optimizer) -> None:
    """Per-parameter optimizer state (momentum buffers) with its parameter's strides: a checkpoint written
    in another memory format (channels_last vs contiguous) holds the same values in another layout, which
    fused CUDA optimizers refuse."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def resume(path: Optional[Path], device: torch.device, model: nn.Module, optimizer: torch.optim.Optimizer,
           strategy: TrainingStrategy, start: Step, end: Step, label: str,
           rebuild: Callable[[], tuple[TrainingStrategy, torch.optim.Optimizer]]):
    """(state or None, strategy, optimizer): a usable checkpoint's states loaded into the optimizer, the
    strategy and then the model (only once the first two fit); otherwise fresh objects from `rebuild`."""
    state = load(path, device, model, start, end, label) if path is not None else None
    if state is not None:
        try:  # the optimizer's and strategy's states first: the model is only touched once they fit
            problem = strategy.state_problem(state["strategy"])
            if problem:
                raise io.CorruptFileError(f"cannot use {path}: {problem}")
            optimizer.load_state_dict(state["optimizer"])
            strategy.load_state_dict(state["strategy"])
            strides_of_parameters(optimizer)
            strategy.adapt_optimizer_state(optimizer)
        except io.CorruptFileError as e:
            aside = io.set_aside(path, layout.REJECTED_CHECKPOINT)
            warn(f"{label}: {e}; set aside as {aside.name}, starting this run again from its start point")
            state = None
            strategy, optimizer = rebuild()
        except Exception as e:  # noqa: BLE001 - any mismatch of a saved state with this run's objects
            aside = io.set_aside(path, layout.REJECTED_CHECKPOINT)
            warn(f"{label}: cannot use {path}: not this run's optimizer or strategy state "
                 f"({type(e).__name__}); set aside as {aside.name}, starting this run again from its start point")
            state = None
            strategy, optimizer = rebuild()
    if state is not None:
        model.load_state_dict(state["model"])
    return state, strategy, optimizer
