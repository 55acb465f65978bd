"""Sparsity you can aim: `--pruning_mode=target` adapts the search's shrinkage to a target share.

The masks still decide which weights go (those below alpha at the end of the search are pruned), but
how hard the search pushes masks down is adapted while it runs: a scale c multiplies the mask's whole
shrinkage, lambda * r'(m) + weight_decay * m (c = 1 is the plain search). What is steered is the
target-quantile of the surviving masks (the value below which the target share lies): it must travel
from where it starts down to alpha over the first `RAMP` of the search (arriving with zero speed), and then
stay at alpha. Every `every` steps the relative error e = (quantile - path) / path, clipped
to [-1, 1], updates log c = I + PROPORTIONAL e with I += GAIN e (a PI controller on log c: the
integral builds pressure slowly, the proportional term lifts it at once when masks overshoot). Steering
the quantile, not the share below alpha, matters: masks that the loss does not hold move down as a
block, and a controller that only sees the share below alpha pushes until the whole block falls
through alpha at once. Reaching alpha halfway leaves the second half (and the lr drops) for the
weights to adapt and for the controller to hold the share. Deterministic and resumable: its state is a
few numbers in the strategy's checkpoint. The paper has no such mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch

RAMP = 0.5            # share of the search over which the quantile travels down to alpha
GAIN = 0.1            # integral gain: change of log c per update at a relative quantile error of 1
PROPORTIONAL = 2.0    # proportional gain on log c: pressure drops at once when the quantile undershoots
UPDATES = 1000        # controller updates per search (one every total_steps // UPDATES steps)
LOG_SCALE_BOUNDS = (math.log(1e-6), math.log(1e9))


@dataclass
class SparsityTarget:
    fraction: float                   # share of the level's survivors that should end below alpha
    threshold: float                  # alpha
    total_steps: int                  # steps of the search
    log_scale: float = 0.0            # log c = integral + PROPORTIONAL x error
    integral: float = 0.0
    steps: int = 0                    # steps observed so far
    start_quantile: Optional[float] = None
    last_quantile: float = 0.0
    last_share: float = 0.0           # share below alpha at the last update
    alive: Optional[torch.Tensor] = None   # bool over the flat mask: the surviving entries (bind)
    n_alive: int = 0

    @property
    def every(self) -> int:
        return max(1, self.total_steps // UPDATES)

    @property
    def scale(self) -> float:
        return math.exp(self.log_scale)

    def path(self, step: int) -> float:
        """From the starting quantile down to alpha, arriving with zero speed (a quadratic ease-in),
        so that the masks near alpha are not still falling when the ramp ends."""
        start = self.start_quantile if self.start_quantile is not None else self.threshold
        left = 1.0 - min(1.0, step / max(1.0, RAMP * self.total_steps))
        return self.threshold + (start - self.threshold) * left * left

    def bind(self, alive: torch.Tensor) -> None:
        """The entries (a bool tensor over the flat mask) that survive into this search."""
        self.alive = alive
        self.n_alive = int(alive.sum())

    @torch.no_grad()
    def observe(self, values: torch.Tensor) -> None:
        """After each optimizer step: every `every` steps, read the target-quantile and adapt c."""
        self.steps += 1
        n_alive = self.n_alive
        if n_alive == 0 or (self.steps % self.every and self.start_quantile is not None):
            return
        surviving = values[self.alive]
        k = max(1, min(n_alive, round(self.fraction * n_alive)))
        self.last_quantile = float(surviving.kthvalue(k).values)
        self.last_share = float((surviving < self.threshold).sum()) / n_alive
        if self.start_quantile is None:
            self.start_quantile = max(self.last_quantile, self.threshold)
        path = self.path(self.steps)
        error = max(-1.0, min(1.0, (self.last_quantile - path) / path))
        low, high = LOG_SCALE_BOUNDS
        self.integral = min(high, max(low, self.integral + GAIN * error))
        self.log_scale = min(high, max(low, self.integral + PROPORTIONAL * error))

    def state_dict(self) -> dict[str, Any]:
        return {"log_scale": self.log_scale, "integral": self.integral, "steps": self.steps, "start_quantile": self.start_quantile,
                "last_quantile": self.last_quantile, "last_share": self.last_share}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_scale = float(state["log_scale"])
        self.integral = float(state.get("integral", self.log_scale))
        self.steps = int(state["steps"])
        self.start_quantile = None if state.get("start_quantile") is None else float(state["start_quantile"])
        self.last_quantile = float(state.get("last_quantile", 0.0))
        self.last_share = float(state.get("last_share", 0.0))
