"""The training loop: resumable, with the strategy hooks and open_lth's callbacks.

`train(job)` is one run in its folder: it reuses a finished run, resumes from a checkpoint, saves the
start and end models, the logger and timing.json, and builds the parts `run_steps` uses: a `Schedule`
(when to check the loss, checkpoint and evaluate; `schedule.py`), a `Checkpointer` (`checkpoint.py`), the
NaN guard (`guard.py`), an `Evaluation`, the task loss and the strategy. `run_steps` is the step loop
itself; stacked replicates (`stacked.py`) run the same `run_steps` with their own parts.

Callbacks (open_lth's order): before each step and once after the last, evaluate at each epoch start
(and at the start/end steps when mid-epoch or when evaluating only at the end), save the model at the
start and end steps, checkpoint at each epoch boundary. At the start and after every step the strategy
may end the run early (`should_stop`); the run is then finished with that step's weights. The step
itself is: lr for this update, forward, loss (+ the strategy's penalty), backward, the strategy's
before-step hook (gradients complete), optimizer step, the strategy's after-step hook.
Metrics accumulate on the device and are read only at evaluation points.
"""
from __future__ import annotations

import contextlib
import signal
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
from open_lth_concave.training import checkpoint, optimizers
from open_lth_concave.training.checkpoint import Checkpointer, cpu_state
from open_lth_concave.training.guard import NanGuard, TrainingDiverged  # noqa: F401  (TrainingDiverged: callers')
from open_lth_concave.training.metric_logger import MetricLogger
from open_lth_concave.training.optimizers import build_optimizer, lr_factor_fn, set_lr
from open_lth_concave.training.progress import Progress, warn
from open_lth_concave.training.schedule import Schedule
from open_lth_concave.training.strategy import Standard, TrainingStrategy, TrainResult

StrategyFactory = Callable[[nn.Module, Mask], TrainingStrategy]
STOP_POLL_STEPS = 20   # under torchrun: how often the processes agree on a stop signal (one host sync)


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


class StopSignals:
    """SIGTERM/SIGINT turned into a flag checked between steps, so a checkpoint can be written."""

    def __init__(self):
        self.flag = False
        self.previous = {}
        self.world = distributed.world_size()

    def __enter__(self) -> "StopSignals":
        def handler(signum, frame):
            self.flag = True
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, h in self.previous.items():
            signal.signal(sig, h)

    def requested(self, at: Step, device: torch.device) -> bool:
        """A signal arrived. Under torchrun the processes must stop at the same step (or their next
        collective would hang), so they agree every STOP_POLL_STEPS steps instead of each on its own."""
        if self.world == 1:
            return self.flag
        return at.iteration % STOP_POLL_STEPS == 0 and distributed.any_process(self.flag, device)


class Evaluation:
    """The test set measured at a step (model in eval mode), its loss checked by the NaN guard, and logged."""

    def __init__(self, model: nn.Module, measure: Callable[[], tuple], logger: MetricLogger,
                 strategy: TrainingStrategy, progress: Progress, guard: NanGuard):
        self.model, self.measure, self.logger = model, measure, logger
        self.strategy, self.progress, self.guard = strategy, progress, guard

    def done(self, at: Step) -> bool:
        return any(it == at.iteration for it, _ in self.logger.get("test_accuracy"))

    def __call__(self, at: Step) -> None:
        distributed.broadcast_buffers(self.model)
        self.model.eval()
        loss, acc, n = self.measure()
        self.model.train()
        self.guard.check_test_loss(loss, at)
        self.record(at, loss, acc, n)

    def record(self, at: Step, loss: float, acc: float, n: int) -> None:
        self.logger.add("test_loss", at.iteration, loss)
        self.logger.add("test_accuracy", at.iteration, acc)
        self.logger.add("test_examples", at.iteration, n)
        for name, value in self.strategy.metrics().items():
            self.logger.add(name, at.iteration, value)
        self.progress.evaluation(at, loss, acc, n)


@dataclass
class Run:
    """The parts one run's steps use (`train` builds them for a single model, `stacked` for replicates)."""
    model: nn.Module
    strategy: TrainingStrategy
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]
    lr_factor: Callable[[int], float]
    forward: Callable                                  # training forward (DDP-wrapped under torchrun)
    task_loss: Callable[[torch.Tensor, torch.Tensor, Step], torch.Tensor]   # (logits, labels, step)
    train_loader: object
    precision: Optional[torch.dtype]
    schedule: Schedule
    evaluation: Evaluation
    guard: NanGuard
    checkpoint: Checkpointer
    progress: Progress
    label: str


def run_steps(run: Run, step: Step) -> Step:
    """Train from `step` to the schedule's end, or to where the strategy stops the run; the step reached.
    Resumable: every epoch boundary checks the loss and checkpoints; a signal checkpoints and stops."""
    schedule, strategy, ipe = run.schedule, run.strategy, run.train_loader.iterations_per_epoch
    device = run.guard.device
    run.model.train()
    stopped = False
    with StopSignals() as signals, run.progress:
        while step < schedule.end and not stopped:
            strategy.on_epoch_start(step.ep, schedule.end.ep)
            if schedule.epoch_boundary(step):
                run.guard.check(step)
                run.checkpoint.save(step)
            if schedule.evaluate_at(step) and not run.evaluation.done(step):
                run.evaluation(step)
            if step == schedule.start and strategy.should_stop(step.iteration):
                break   # the strategy ends its run at its start (asked after every step below)
            for x, y in run.train_loader.batches(step.ep, step.it):
                if signals.requested(step, device):
                    run.checkpoint.save(step)
                    saved = "checkpoint saved, run again to resume" if run.checkpoint.path else "this run keeps no checkpoint"
                    raise Interrupted(f"{run.label}: stopped by a signal at step {step}; {saved}")
                set_lr(run.optimizer, run.base_lrs, run.lr_factor(step.iteration))
                with autocast_context(device, run.precision):
                    loss = run.task_loss(run.forward(x), y, step)
                update(loss, strategy, run.optimizer)
                run.guard.add(loss)
                step = Step(step.iteration + 1, ipe)
                run.progress.step(step)
                if step >= schedule.end:
                    break
                if strategy.should_stop(step.iteration):
                    stopped = True   # e.g. a mask search that has settled: finished with this step's weights
                    break
        run.guard.check(step)
        if not run.evaluation.done(step):
            run.evaluation(step)
    return step


def train(job: TrainJob) -> TrainResult:
    """Train job.model from start_step to end_step in job.output_dir; resume or skip as files allow."""
    out = Path(job.output_dir)
    device = job.platform.torch_device
    model = job.model.to(device)
    job.platform.choose_memory_format(model)   # as jobs.build does; here for jobs made in Python
    for loader in (job.train_loader, job.test_loader):   # batches in the model's format
        if hasattr(loader, "channels_last"):
            loader.channels_last = job.platform.channels_last
    if job.platform.channels_last:
        model = model.to(memory_format=torch.channels_last)
    strategy = job.make_strategy(model, job.mask)
    end_file = model_path(out, job.end_step)
    strategy_file = out / layout.STRATEGY_FINAL
    # a zero-length run (e.g. --training_steps=0ep) ends where it starts: its end file is its start file (level 0's is
    # the rewind point), so only a logger tells that it ran, and that file is never removed or rewritten
    zero_length = job.start_step == job.end_step
    if end_file.exists() and not (zero_length and not (out / layout.LOGGER).exists()):  # finished before: reuse
        if _reuse_finished(job, model, strategy, end_file, strategy_file, zero_length):
            return TrainResult(model, strategy)
        strategy = job.make_strategy(model, job.mask)

    hp = job.hparams
    ipe = job.train_loader.iterations_per_epoch

    def rebuild():
        fresh = job.make_strategy(model, job.mask)
        return fresh, build_optimizer(model, hp, fresh.param_groups(), fused=job.platform.fused_optimizer)
    optimizer = build_optimizer(model, hp, strategy.param_groups(), fused=job.platform.fused_optimizer)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    checkpoint_file = out / layout.CHECKPOINT
    state, strategy, optimizer = checkpoint.resume(checkpoint_file, device, model, optimizer, strategy,
                                                   job.start_step, job.end_step, job.label, rebuild)
    strategy.bind_optimizer(optimizer)
    step, elapsed, logger = job.start_step, 0.0, MetricLogger()
    if state is not None:
        step = Step(int(state["iteration"]), ipe)
        elapsed = float(state["elapsed"])
        logger = MetricLogger.from_str(state["logger"])
        print(f"{job.label}: resumed at {step} (of {job.end_step}) from {checkpoint_file}", flush=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
        if not (zero_length and end_file.exists()):
            io.save_torch(cpu_state(model), model_path(out, job.start_step))
    changed = platform_record.start_session(out, platform_record.current(job.platform, hp.apex_fp16), step.iteration,
                                            resumed=state is not None)
    if changed:
        warn(f"{job.label}: resumed at step {step} on another platform than before ({'; '.join(changed)}); "
             f"{out / platform_record.FILE} records each part")

    forward = torch.compile(strategy.forward) if job.platform.compile else strategy.forward
    precision = autocast_dtype(job.platform, hp)
    world = distributed.world_size()
    model_params = {id(p) for p in model.parameters()}
    extra = [p for group in strategy.param_groups() for p in group["params"] if id(p) not in model_params]
    t0 = time.time() - elapsed
    progress = Progress(job.label, step, job.end_step, t0=t0, quiet=job.quiet)
    guard = NanGuard(job.label, device, logger)

    def task_loss(logits: torch.Tensor, y: torch.Tensor, at: Step) -> torch.Tensor:
        if world == 1:
            return F.cross_entropy(logits.float(), y)
        # scaled so that DDP's average over processes is the exact global-batch mean
        return F.cross_entropy(logits.float(), y, reduction="sum") * (world / job.train_loader.examples_in_batch(at.it))

    run = Run(model, strategy, optimizer, base_lrs, lr_factor_fn(hp, ipe),
              distributed.data_parallel(model, forward, extra, device), task_loss, job.train_loader, precision,
              Schedule(job.start_step, job.end_step, "ends" if job.evaluate_only_at_end else "epochs"),
              Evaluation(model, lambda: evaluate(forward, job.test_loader, job.platform, precision), logger, strategy,
                         progress, guard),
              guard, Checkpointer(checkpoint_file, model, optimizer, strategy, logger, t0), progress,
              job.label)
    step = run_steps(run, step)

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
        io.save_torch(cpu_state(model), end_file)  # last: its presence marks the run finished
    io.remove(checkpoint_file)
    return TrainResult(model, strategy)


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


def _reuse_finished(job: TrainJob, model: nn.Module, strategy: TrainingStrategy, end_file: Path,
                    strategy_file: Path, zero_length: bool) -> bool:
    """Load a run finished before into the model and strategy; False (model back at its start, a damaged end
    file removed) when its files are unreadable, so it is trained again."""
    out = Path(job.output_dir)
    initial = cpu_state(model)
    try:  # read and check everything before touching the model, so a damaged file leaves it at the start
        end_state, strategy_state = _read_finished(job, model, end_file, strategy_file, job.platform.torch_device)
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
        return False
    return True


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

