"""The automatic CPU thread count (`--threads=0`, the default).

More intra-op threads only pay when a training step holds enough arithmetic to split, and only on
cores nobody else is using: OpenMP threads wait for each other at every operator, so one thread on a
core taken by another process stalls all of them. Measured on this project's 2-core machine (see
`bench/threads.py` and its table in `bench/README.md`): a digits lottery took 37-104 s with 2 threads
on a busy machine and 7-10 s with 1.

The rule: a step of fewer than `SMALL_STEP_MACS` multiply-accumulates (forward + backward, about 3x
the forward's) runs on 1 thread; a larger one gets the cores this process may use that are idle now
(`os.sched_getaffinity` minus the load other processes put on the machine, sampled from /proc/stat
for a quarter of a second, else the 1-minute load average), shared among the processes of a torchrun
job on this host, at least 1. `--threads=N` overrides it.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

SMALL_STEP_MACS = 1e9   # below this a training step gains nothing from a second thread (bench/threads.py)


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str          # e.g. "small model" or "2 of 2 cores idle"


_busy_cache: Optional[float] = None
last_choice: Optional[ThreadChoice] = None   # what the last automatic choice decided (the banner shows it)


def forward_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one example's forward pass through the convolutions and linear layers,
    found from shapes alone: `model` may live on the meta device."""
    total = 0

    def count(module: nn.Module, _inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += output[0].numel() * per_output
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def forward_macs_bound(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """An upper bound of `forward_macs` from the parameters alone, with no forward pass: a linear layer's
    exact count, and every convolution's as if it kept the input's full spatial size (no stride or pooling
    ever grows it). Exact for fully connected networks."""
    spatial = math.prod(input_shape[1:]) if len(input_shape) > 1 else 1
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
        elif isinstance(m, nn.Conv2d):
            total += m.out_channels * (m.in_channels // m.groups) * math.prod(m.kernel_size) * spatial
    return total


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask), shared among the torchrun processes of this host."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    per_host = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, n // max(1, per_host))


def _cpu_times() -> Optional[tuple[float, float]]:
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)   # idle + iowait
    return sum(fields[:8]), idle


def busy_cpus(sample_seconds: float = 0.25) -> float:
    """How many cores other processes keep busy now: from /proc/stat over `sample_seconds` (this process
    sleeps meanwhile), else the 1-minute load average, else 0. Measured once per process."""
    global _busy_cache
    if _busy_cache is not None:
        return _busy_cache
    before = _cpu_times()
    if before is not None:
        time.sleep(sample_seconds)
        after = _cpu_times()
        total, idle = after[0] - before[0], after[1] - before[1]
        cpus = os.cpu_count() or 1
        _busy_cache = cpus * (1.0 - idle / total) if total > 0 else 0.0
    else:
        try:
            _busy_cache = os.getloadavg()[0]
        except (AttributeError, OSError):
            _busy_cache = 0.0
    return _busy_cache


def choose(step_macs: float, usable: Optional[int] = None, busy: Optional[float] = None) -> ThreadChoice:
    """The thread count for a training step of `step_macs` multiply-accumulates."""
    if step_macs < SMALL_STEP_MACS:
        return ThreadChoice(1, "small model")
    usable = usable_cpus() if usable is None else usable
    busy = busy_cpus() if busy is None else busy
    cpus = os.cpu_count() or usable
    idle = max(0.0, cpus - busy)
    threads = max(1, min(usable, int(math.floor(idle + 0.5))))
    return ThreadChoice(threads, f"{idle:.1f} of {cpus} cores idle")


def choose_for_model(model: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> ThreadChoice:
    """The thread count for training `model`. A model whose bound (`forward_macs_bound`) is already small
    needs no forward pass: the exact count runs one on the meta device, whose first use costs about a
    second of imports (torch's reference operators), more than a small model's whole lottery gains."""
    if 3.0 * forward_macs_bound(model, input_shape) * batch_size < SMALL_STEP_MACS:
        return choose(0.0)
    return choose(3.0 * forward_macs(model, input_shape) * batch_size)


def apply_choice(choice: ThreadChoice) -> None:
    global last_choice
    torch.set_num_threads(choice.threads)
    last_choice = choice
