"""The timing harness of bench/speed.py: the workloads, our training path timed from inside the loop,
interleaved repetitions and the machine's description.

"Ours" is the real training path: `open_lth_concave.training.loop.train` itself, run on a short TrainJob
(evaluation only at the start and the end, on a 128-example test set, outside the timed window), fed by
`datasets.loader.BatchLoader` holding the uint8 data on the device. `TimedLoader` reads the clock at the
moment the loop asks for batch `warmup` and again for batch `warmup + steps`: the window is exactly
`steps` full iterations of the loop. `interleaved` runs every configuration once untimed, then `reps`
timed repetitions in an order rotated by one per repetition. bench/threads.py and
bench/stacked_replicates.py time the same workloads with it.
"""
from __future__ import annotations

import math
import os
import platform as pyplatform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

import open_lth_concave.datasets  # noqa: F401  (registers the dataset specs)
from open_lth_concave.datasets.base import DatasetSpec, ImageData
from open_lth_concave.datasets.base import registry as dataset_specs
from open_lth_concave.datasets.loader import BatchLoader
from open_lth_concave.foundations.hparams import ModelHparams, TrainingHparams
from open_lth_concave.foundations.step import Step
from open_lth_concave.models import get_model
from open_lth_concave.platform import Platform
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.training import loop
from open_lth_concave.training.strategy import Standard

BATCH = 128


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------------
@dataclass
class Workload:
    key: str
    label: str
    model_name: str
    dataset: str                      # a registered DatasetSpec (only its shape/mean/std are used)
    train_examples: int               # synthetic training-set size
    epoch_examples: int               # examples per epoch used to scale steps/s to an epoch time
    hparams: TrainingHparams
    soft_mask_ignore: Optional[str]   # layers that keep plain weights in the soft-mask search
    warmup: int
    steps: int
    quick_warmup: int
    quick_steps: int

    @property
    def spec(self) -> DatasetSpec:
        return dataset_specs.get(self.dataset)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.epoch_examples / BATCH)


WORKLOADS = [
    Workload("lenet", "LeNet-300-100 / MNIST-shaped", "mnist_lenet_300_100", "mnist", 60_000, 60_000,
             TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="40ep"), "fc.weight",
             warmup=20, steps=300, quick_warmup=5, quick_steps=60),
    Workload("resnet20", "ResNet-20 / CIFAR-shaped (crop+flip)", "cifar_resnet_20", "cifar10", 50_000, 50_000,
             TrainingHparams(optimizer_name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, training_steps="160ep"),
             None, warmup=2, steps=12, quick_warmup=1, quick_steps=3),
]


def synthetic(spec: DatasetSpec, n: int, seed: int) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *spec.image_shape), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, spec.num_classes, (n,), generator=g)
    return ImageData(images, labels)


def build_model(w: Workload) -> nn.Module:
    spec = w.spec
    hp = ModelHparams(model_name=w.model_name, model_init="kaiming_normal", batchnorm_init="uniform")
    return get_model(hp, spec.image_shape, spec.num_classes, torch.Generator().manual_seed(0))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------
# Ours: loop.train on a short job, timed by the train loader
# ---------------------------------------------------------------------------------------------------
class TimedLoader:
    """Wraps a BatchLoader; reads the clock when the loop asks for batch `warmup` and `warmup + steps`
    (counted across epochs), so the window holds exactly `steps` complete loop iterations."""

    def __init__(self, inner: BatchLoader, warmup: int, steps: int, device: torch.device):
        self.inner, self.warmup, self.steps, self.device = inner, warmup, steps, device
        self.iterations_per_epoch = inner.iterations_per_epoch
        self.num_examples = inner.num_examples
        self.count = 0
        self.t0 = self.t1 = None

    def batches(self, epoch: int, start_iteration: int = 0):
        for batch in self.inner.batches(epoch, start_iteration):
            if self.count == self.warmup:
                synchronize(self.device)
                self.t0 = time.perf_counter()
            elif self.count == self.warmup + self.steps:
                synchronize(self.device)
                self.t1 = time.perf_counter()
            self.count += 1
            yield batch

    @property
    def seconds(self) -> float:
        if self.t0 is None or self.t1 is None:
            raise RuntimeError("the timed window was not completed")
        return self.t1 - self.t0


def soft_mask_factory(w: Workload) -> tuple[Optional[Callable], Optional[str]]:
    """Our soft-mask strategy, imported lazily: (factory, None) or (None, why it is unavailable)."""
    try:
        from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
        hparams = SoftMaskHparams(pruning_layers_to_ignore=w.soft_mask_ignore)
    except Exception as e:  # noqa: BLE001 - the plug-in may be missing or half-written
        return None, f"{type(e).__name__}: {e}"
    return (lambda model, mask: SoftMask(model, mask, hparams)), None


def time_ours(w: Workload, strategy: str, train_loader: BatchLoader, test_loader: BatchLoader,
              platform: Platform, warmup: int, steps: int) -> float:
    """Seconds per step of loop.train over `steps` iterations after `warmup`."""
    if strategy == "standard":
        make_strategy = Standard
    else:
        make_strategy, why = soft_mask_factory(w)
        if make_strategy is None:
            raise RuntimeError(why)
    model = build_model(w)
    timed = TimedLoader(train_loader, warmup, steps, platform.torch_device)
    ipe = timed.iterations_per_epoch
    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        job = loop.TrainJob(output_dir=Path(tmp), model=model, mask=Mask.ones_like(model),
                            train_loader=timed, test_loader=test_loader, hparams=w.hparams,
                            start_step=Step.zero(ipe), end_step=Step(warmup + steps + 1, ipe),
                            platform=platform, make_strategy=make_strategy,
                            quiet=True, evaluate_only_at_end=True, label=f"bench {w.key} {strategy}")
        loop.train(job)
    return timed.seconds / steps


# ---------------------------------------------------------------------------------------------------
# Measurements, repetitions, the machine
# ---------------------------------------------------------------------------------------------------
@dataclass
class Measure:
    seconds: list[float] = field(default_factory=list)   # per step, one per repetition
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.ok else float("nan")

    @property
    def steps_per_s(self) -> float:
        return 1.0 / self.median if self.ok else float("nan")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name or pyplatform.processor() or 'unknown CPU'} ({os.cpu_count()} logical CPUs)"


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def our_platforms(device: torch.device) -> dict[str, Platform]:
    """`ours`: the defaults a user gets; `ours_fp32`: the same with --precision fp32, listed when the
    default is bf16, so the table separates what reduced precision buys from the rest."""
    default = Platform(device=str(device))
    out = {"ours": default}
    if default.autocast_dtype is not None:
        out["ours_fp32"] = Platform(device=str(device), precision="fp32")
    return out



def interleaved(key: str, configs: list[tuple[str, str]], run: Callable[[tuple[str, str], int], float],
                steps: int, reps: int) -> dict:
    """{config: Measure}: `run(config, n)` (seconds per step over n timed steps) once with n = 1, untimed, for
    every configuration (allocator, kernels, first-call work, worker start-up; a failure marks the row
    unavailable), then `reps` repetitions with n = `steps` of every live configuration, rotated by one per
    repetition so machine noise hits all alike."""
    table = {c: Measure() for c in configs}
    for c in configs:
        try:
            run(c, 1)
        except Exception as e:  # noqa: BLE001 - report the row as unavailable, keep the rest
            table[c].error = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            log(f"[{key}] {c[0]} {c[1]} unavailable: {table[c].error}")
    live = [c for c in configs if table[c].error is None]
    for r in range(reps):
        order = live[r % len(live):] + live[:r % len(live)] if live else []   # rotate: interleaved
        for c in order:
            sec = run(c, steps)
            table[c].seconds.append(sec)
            log(f"[{key}] rep {r + 1}/{reps} {c[0]:>9} {c[1]:<9} {1 / sec:8.2f} steps/s")
    return table
