"""The training loop: one function, resumable, with the strategy hooks and open_lth's callbacks.

Callbacks (open_lth's order): before each step and once after the last, evaluate at each epoch start
(and at the start/end steps when mid-epoch or when evaluating only at the end), save the model at the
start and end steps, checkpoint at each epoch boundary. At the start and after every step the strategy
may end the run early (`should_stop`); the run is then finished with that step's weights. The step
itself is: lr for this update,
forward, loss (+ the strategy's penalty), backward, the strategy's before-step hook (gradients complete),
optimizer step, the strategy's after-step hook.
Metrics accumulate on the device and are read only at evaluation points.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from open_lth_concave.foundations import distributed, io, layout, validate
from open_lth_concave.foundations.hparams import TrainingHparams
from open_lth_concave.foundations.step import Step
from open_lth_concave.platform import Platform
from open_lth_concave.platform import record as platform_record
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.results import model_path
from open_lth_concave.training.metric_logger import MetricLogger
from open_lth_concave.training import optimizers
from open_lth_concave.training.optimizers import build_optimizer, lr_factor_fn, set_lr
from open_lth_concave.training.progress import Progress
from open_lth_concave.training.strategy import Standard, TrainingStrategy

StrategyFactory = Callable[[nn.Module, Mask], TrainingStrategy]
STOP_POLL_STEPS = 20   # under torchrun: how often the processes agree on a stop signal (one host sync)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing is saved as final."""


class Interrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; a checkpoint was saved and the run can resume."""


@dataclass
class TrainJob:
    output_dir: Path
    model: nn.Module                  # already initialized (rewound) and masked
    mask: Mask
    train_loader: object              # datasets.loader.BatchLoader
    test_loader: object
    hparams: TrainingHparams
    start_step: Step                  # where the schedule and data order begin
    end_step: Step
    platform: Platform = field(default_factory=Platform)
    make_strategy: StrategyFactory = Standard
    quiet: bool = False
    evaluate_only_at_end: bool = False
    label: str = "train"              # shown in messages (e.g. "level 2 search")


@torch.no_grad()
def evaluate(forward: Callable, loader, platform: Platform,
             autocast_dtype: Optional[torch.dtype] = None) -> tuple[float, float, int]:
    """(mean loss, accuracy fraction, examples) on a loader's fixed order."""
    device = platform.torch_device
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in loader.batches(0):
        with autocast_context(device, autocast_dtype):
            logits = forward(x)
        total_loss += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        n += y.numel()
    return (total_loss / max(n, 1)).item(), correct.item() / max(n, 1), n


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]):
    """torch.autocast for `dtype`, or nothing (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def autocast_dtype(platform: Platform, hparams: TrainingHparams) -> Optional[torch.dtype]:
    """open_lth's --apex_fp16 (part of the experiment) asks for reduced precision whatever the platform says."""
    return torch.bfloat16 if hparams.apex_fp16 else platform.autocast_dtype


@contextlib.contextmanager
def _stop_signals():
    """Turn SIGTERM/SIGINT into a flag checked between steps, so a checkpoint can be written."""
    flag = {"stop": False}
    previous = {}

    def handler(signum, frame):
        flag["stop"] = True
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield flag
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def train(job: TrainJob) -> tuple[nn.Module, TrainingStrategy]:
    """Train job.model from start_step to end_step in job.output_dir; resume or skip as files allow."""
    out = Path(job.output_dir)
    device = job.platform.torch_device
    model = job.model.to(device)
    if job.platform.channels_last:
        model = model.to(memory_format=torch.channels_last)
    strategy = job.make_strategy(model, job.mask)
    end_file = model_path(out, job.end_step)
    strategy_file = out / layout.STRATEGY_FINAL
    # a zero-length run (e.g. --training_steps=0ep) ends where it starts: its end file is its start file (level 0's is
    # the rewind point), so only a logger tells that it ran, and that file is never removed or rewritten
    zero_length = job.start_step == job.end_step
    if end_file.exists() and not (zero_length and not (out / layout.LOGGER).exists()):  # finished before: reuse
        initial = _cpu_state(model)
        try:  # read and check everything before touching the model, so a damaged file leaves it at the start
            end_state, strategy_state = _read_finished(job, model, end_file, strategy_file, device)
            model.load_state_dict(end_state)
            if strategy_state is not None:
                try:
                    strategy.load_state_dict(strategy_state)
                except Exception as e:  # noqa: BLE001 - any mismatch of the strategy's saved state
                    raise io.CorruptFileError(f"cannot use {strategy_file}: not this run's strategy state "
                                              f"({type(e).__name__})") from None
        except (io.CorruptFileError, FileNotFoundError) as e:
            warn(f"{job.label}: the finished run in {out} is unreadable ({e}); training it again")
            if not zero_length or str(end_file) in str(e):
                io.remove(end_file)
            model.load_state_dict(initial)
            strategy = job.make_strategy(model, job.mask)
        else:
            return model, strategy

    hp = job.hparams
    ipe = job.train_loader.iterations_per_epoch
    optimizer = build_optimizer(model, hp, strategy.param_groups(), fused=job.platform.fused_optimizer)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    lr_factor = lr_factor_fn(hp, ipe)
    logger = MetricLogger()
    step, elapsed = job.start_step, 0.0
    checkpoint = out / layout.CHECKPOINT
    state = _load_checkpoint(checkpoint, device, job, model)
    if state is not None:
        try:  # the optimizer's and strategy's states first: the model is only touched once they fit
            optimizer.load_state_dict(state["optimizer"])
            strategy.load_state_dict(state["strategy"])
        except Exception as e:  # noqa: BLE001 - any mismatch of a saved state with this run's objects
            warn(f"{job.label}: cannot use {checkpoint}: not this run's optimizer or strategy state "
                 f"({type(e).__name__}); starting this run again from its start point")
            io.remove(checkpoint)
            state = None
            strategy = job.make_strategy(model, job.mask)
            optimizer = build_optimizer(model, hp, strategy.param_groups(), fused=job.platform.fused_optimizer)
    if state is not None:
        model.load_state_dict(state["model"])
        step = Step(int(state["iteration"]), ipe)
        elapsed = float(state["elapsed"])
        logger = MetricLogger.from_str(state["logger"])
        print(f"{job.label}: resumed at {step} (of {job.end_step}) from {checkpoint}", flush=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
        if not (zero_length and end_file.exists()):
            io.save_torch(_cpu_state(model), model_path(out, job.start_step))
    changed = platform_record.start_session(out, platform_record.current(job.platform, hp.apex_fp16), step.iteration,
                                            resumed=state is not None)
    if changed:
        warn(f"{job.label}: resumed at step {step} on another platform than before ({'; '.join(changed)}); "
             f"{out / platform_record.FILE} records each part")

    forward = torch.compile(strategy.forward) if job.platform.compile else strategy.forward
    precision = autocast_dtype(job.platform, hp)
    running_loss = torch.zeros((), device=device)
    running_count = 0
    world = distributed.world_size()
    model_params = {id(p) for p in model.parameters()}
    extra = [p for group in strategy.param_groups() for p in group["params"] if id(p) not in model_params]
    train_forward = distributed.data_parallel(model, forward, extra, device)
    t0 = time.time() - elapsed
    progress = Progress(job.label, step, job.end_step, t0=t0, quiet=job.quiet)

    def save_checkpoint(at: Step) -> None:
        distributed.broadcast_buffers(model)
        io.save_torch({"model": _cpu_state(model), "optimizer": optimizer.state_dict(),
                       "strategy": strategy.state_dict(), "iteration": at.iteration,
                       "elapsed": time.time() - t0, "logger": str(logger)}, checkpoint)

    def check_finite(at: Step) -> None:
        nonlocal running_loss, running_count
        if running_count:
            mean = (running_loss / running_count).item()
            if not torch.isfinite(torch.tensor(mean)):
                raise TrainingDiverged(f"{job.label}: the training loss became {mean} by epoch {at.ep} iteration {at.it} "
                                       f"(step {at}); nothing was saved as final. Lower --lr or check the data.")
            logger.add("train_loss", at.iteration, mean)
            running_loss = torch.zeros((), device=device)
            running_count = 0

    def evaluate_now(at: Step) -> None:
        distributed.broadcast_buffers(model)
        model.eval()
        loss, acc, n = evaluate(forward, job.test_loader, job.platform, precision)
        model.train()
        if not torch.isfinite(torch.tensor(loss)):
            raise TrainingDiverged(f"{job.label}: the test loss became {loss} at epoch {at.ep} iteration {at.it}; "
                                   "nothing was saved as final. Lower --lr or check the data.")
        logger.add("test_loss", at.iteration, loss)
        logger.add("test_accuracy", at.iteration, acc)
        logger.add("test_examples", at.iteration, n)
        for name, value in strategy.metrics().items():
            logger.add(name, at.iteration, value)
        progress.evaluation(at, loss, acc, n)

    def stop_requested(at: Step) -> bool:
        """A signal arrived. Under torchrun the processes must stop at the same step (or their next
        collective would hang), so they agree every STOP_POLL_STEPS steps instead of each on its own."""
        if world == 1:
            return stop["stop"]
        return at.iteration % STOP_POLL_STEPS == 0 and distributed.any_process(stop["stop"], device)

    def should_evaluate(at: Step) -> bool:
        if job.evaluate_only_at_end:
            return at == job.start_step or at == job.end_step
        return at.it == 0 or at == job.start_step or at == job.end_step

    def evaluated(at: Step) -> bool:
        return any(it == at.iteration for it, _ in logger.get("test_accuracy"))

    model.train()
    ended_early = False
    with _stop_signals() as stop, progress:
        while step < job.end_step:
            strategy.on_epoch_start(step.ep, job.end_step.ep)
            if step.it == 0 and step != job.start_step:
                check_finite(step)
                save_checkpoint(step)
            if should_evaluate(step) and not evaluated(step):
                evaluate_now(step)
            if step == job.start_step and strategy.should_stop(step.iteration):
                break   # the strategy ends its run at its start (asked after every step below)
            for x, y in job.train_loader.batches(step.ep, step.it):
                if stop_requested(step):
                    save_checkpoint(step)
                    raise Interrupted(f"{job.label}: stopped by a signal at step {step}; checkpoint saved, run again to resume")
                set_lr(optimizer, base_lrs, lr_factor(step.iteration))
                with autocast_context(device, precision):
                    if world == 1:
                        loss = F.cross_entropy(train_forward(x).float(), y)
                    else:  # scaled so that DDP's average over processes is the exact global-batch mean
                        loss = F.cross_entropy(train_forward(x).float(), y, reduction="sum") * \
                            (world / job.train_loader.examples_in_batch(step.it))
                update(loss, strategy, optimizer)
                running_loss += loss.detach()
                running_count += 1
                step = Step(step.iteration + 1, ipe)
                progress.step(step)
                if step >= job.end_step:
                    break
                if strategy.should_stop(step.iteration):
                    ended_early = True   # e.g. a mask search that has settled: finished with this step's weights
                    break
            if ended_early:
                break
        check_finite(step)
        if not evaluated(step):
            evaluate_now(step)

    logger.save(out / layout.LOGGER)
    state = strategy.state_dict()
    if state:
        io.save_torch(state, strategy_file)
    timing = {"seconds": time.time() - t0, "iterations": step.iteration - job.start_step.iteration}
    if step < job.end_step:   # the strategy ended the run early; its final model holds this step's weights
        timing["stopped_at"] = step.iteration
    io.save_json(timing, out / layout.TIMING)
    distributed.broadcast_buffers(model)
    if not (zero_length and end_file.exists()):
        io.save_torch(_cpu_state(model), end_file)  # last: its presence marks the run finished
    io.remove(checkpoint)
    return model, strategy


def update(loss: torch.Tensor, strategy: TrainingStrategy, optimizer: torch.optim.Optimizer) -> None:
    """The rest of a training step once the task loss is known: the strategy's penalty (the same on
    every process, so DDP's averaging keeps it whole), backward, the strategy's hooks, the update."""
    penalty = strategy.penalty()
    total = loss if penalty is None else loss + penalty
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    strategy.before_step()
    optimizers.step(optimizer)   # optimizer.step() without its start-up cost (training/optimizers.py)
    strategy.after_step()


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _load_checkpoint(path: Path, device: torch.device, job: TrainJob, model: nn.Module) -> Optional[dict]:
    """The checkpoint's contents, or None (fresh start) when there is none or it is damaged: it must
    hold this model's state, a step inside this run and a readable logger."""
    if not path.exists():
        return None
    try:
        state = io.load_torch(path, map_location=device)
        if not isinstance(state, dict) or not {"model", "optimizer", "strategy", "iteration", "elapsed", "logger"} <= set(state):
            raise io.CorruptFileError(f"cannot read {path}: not a training checkpoint")
        validate.tensors(state["model"], path, model.state_dict(), "model state")
        if not validate.number(state["iteration"], integer=True, minimum=job.start_step.iteration) or \
                state["iteration"] >= job.end_step.iteration or not validate.number(state["elapsed"], minimum=0) or \
                not isinstance(state["logger"], str):
            raise io.CorruptFileError(f"cannot use {path}: its step or logger is not one of this run's")
        try:
            MetricLogger.from_str(state["logger"])
        except ValueError:
            raise io.CorruptFileError(f"cannot use {path}: its logger is damaged") from None
        return state
    except io.CorruptFileError as e:
        warn(f"{job.label}: {e}; starting this run again from its start point")
        io.remove(path)
        return None


def check_logger(logger: MetricLogger, path: Path, last: int) -> None:
    """A finished run's logger ends with the test loss and accuracy of its last step (every way of training
    evaluates there: the loop, stacked replicates), has nothing after it, and accuracies in [0, 1]."""
    for name in ("test_accuracy", "test_loss"):
        found = dict(logger.get(name))
        if last not in found:
            raise io.CorruptFileError(f"cannot use {path}: it is incomplete (no {name} at the run's last iteration {last})")
        if any(it > last for it in found):
            raise io.CorruptFileError(f"cannot use {path}: it has {name} after the run's last iteration {last}")
    if any(not 0 <= v <= 1 for _, v in logger.get("test_accuracy")):
        raise io.CorruptFileError(f"cannot use {path}: a test accuracy outside [0, 1]")


def _read_finished(job: TrainJob, model: nn.Module, end_file: Path, strategy_file: Path, device: torch.device):
    """(final state, strategy state or None) of a finished run, after checking every file it left: the
    final model against the model's keys and shapes, timing.json, and a logger complete up to its end."""
    out = Path(job.output_dir)
    end_state = validate.tensors(io.load_torch(end_file, map_location=device), end_file, model.state_dict(),
                                 "model state")
    for name, keep in job.mask.items():  # a ticket's pruned weights are zero (else it was trained on another mask)
        if name in end_state and bool((end_state[name][keep.to(end_state[name].device) == 0] != 0).any()):
            raise io.CorruptFileError(f"cannot use {end_file}: weights of {name} that the mask prunes are not zero")
    strategy_state = io.load_torch(strategy_file, map_location=device) if strategy_file.exists() else None
    last = job.end_step.iteration
    timing_file = out / layout.TIMING
    if timing_file.exists():  # runs made before it existed (and open_lth's) have none
        start = job.start_step.iteration
        timing = validate.record(io.load_json(timing_file), timing_file, {
            "seconds": lambda v: validate.number(v, minimum=0),
            "iterations": lambda v: validate.number(v, integer=True, minimum=0) and start + v <= job.end_step.iteration,
        }, "timing record")
        last = start + int(timing["iterations"])
        if last != job.end_step.iteration and timing.get("stopped_at") != last:
            raise io.CorruptFileError(f"cannot use {timing_file}: {timing['iterations']} iterations, the run has "
                                      f"{job.end_step.iteration - start}")
    check_logger(MetricLogger.load(out / layout.LOGGER), out / layout.LOGGER, last)
    return end_state, strategy_state


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

