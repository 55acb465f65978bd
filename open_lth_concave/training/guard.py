"""The NaN stop: a training run whose loss becomes NaN or infinite ends with an error, saving nothing as final.

The training loss is summed on the device at every step (no host synchronization) and its mean read
at each check (epoch boundaries and the end of the run, `schedule.Schedule.epoch_boundary`); under
torchrun that mean is taken over every process, so a NaN seen by one process stops them all at the same
check (a process stopping alone would leave the others waiting for it). The test loss is checked at
every evaluation (the same value on every process). Single runs and stacked replicates use the same guard.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Union

import torch

from open_lth_concave.foundations import distributed
from open_lth_concave.foundations.step import Step
from open_lth_concave.training.metric_logger import MetricLogger


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing is saved as final."""


class NanGuard:
    def __init__(self, label: str, device: torch.device, logger: Optional[MetricLogger] = None):
        self.label, self.device, self.logger = label, device, logger
        self.total = torch.zeros((), device=device)
        self.count = 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach()
        self.count += 1

    def check(self, at: Step) -> None:
        """Stop on a non-finite mean training loss since the last check; else log it (`train_loss`)."""
        if not self.count:
            return
        mean = distributed.mean_over_processes(self.total, self.count)   # under torchrun: one decision for all
        if not torch.isfinite(torch.tensor(mean)):
            raise TrainingDiverged(f"{self.label}: the training loss became {mean} by epoch {at.ep} iteration {at.it} "
                                   f"(step {at}); nothing was saved as final. Lower --lr or check the data.")
        if self.logger is not None:
            self.logger.add("train_loss", at.iteration, mean)
        self.total = torch.zeros((), device=self.device)
        self.count = 0

    def check_test_loss(self, loss: Union[float, Iterable[float]], at: Step) -> None:
        """Stop on a non-finite test loss (one value, or one per stacked replicate)."""
        losses = [loss] if isinstance(loss, (int, float)) else list(loss)
        bad = next((v for v in losses if not math.isfinite(v)), None)
        if bad is not None:
            raise TrainingDiverged(f"{self.label}: the test loss became {bad} at epoch {at.ep} iteration {at.it}; "
                                   "nothing was saved as final. Lower --lr or check the data.")
