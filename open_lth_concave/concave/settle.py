"""Ending a mask search early once the set of weights it would prune has settled (`--early_stop=settled`).

At every evaluation point of a search (each multiple of `--early_stop_every` iterations, by default
each epoch boundary, and the run's start) the set P_t of surviving entries that would be pruned if the search ended now is computed
with the level's own pruning rule:
  threshold  masks < alpha;
  target     masks < alpha, at most ceil(fraction x surviving) of them (the smallest, ties included);
  fraction   the ceil(fraction x surviving) smallest masks (ties included).
The search ends at point t when P_t is not empty and differs from each of the `window` previous sets
by at most `tolerance` x |P_t| entries (symmetric difference; |P_t| <= the level's surviving prunable
weights, and at the end of a search that prunes most of them the two are close); in target mode not
before the controller's ramp has ended (`target.RAMP` of the search), since until then the controller
is still bringing masks down to alpha on purpose.
Why relative to the set and not to all surviving weights: with the paper's mask optimizer the masks
move down as a block and the set stays empty for most of a round (300 of 527 epochs on MNIST-10k),
then fills within ~40 epochs; measured with the tolerance as a share of all surviving weights (1%,
window 5), the search ended at the first point where ONE weight was below alpha (iteration 18585 of
33201), since 1 weight differs from the empty sets by far less than 1% of 265,200. Relative to the
set, a set that is still filling never counts as settled.
Comparing with each earlier set of the window, not only with the previous one, also catches a
slow drift that stays under the tolerance from one point to the next.

The state (the last `window` sets, bit-packed, and the trace of changes) is part of the strategy's
checkpoint, and each observation is keyed by its iteration (observing the same iteration again after
a resume replaces it), so a killed and resumed search stops at exactly the same step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from open_lth_concave.concave.target import OUTCOME_TOLERANCE, RAMP
from open_lth_concave.foundations.hparams import HparamError, Hparams, hp
from open_lth_concave.foundations.step import Step

EARLY_STOP_CHOICES = ("off", "settled")


def would_prune(values: torch.Tensor, alive: torch.Tensor, n_alive: int, mode: str, threshold: float,
                fraction: float) -> torch.Tensor:
    """Bool tensor over the flat mask: the entries the level's pruning rule would remove now."""
    if n_alive == 0:
        return torch.zeros_like(alive)
    cap = math.ceil(fraction * n_alive)
    if mode == "fraction":
        return alive & (values <= kth_smallest(values[alive], cap))
    below = alive & (values < threshold)
    if mode == "target" and abs(int(below.sum()) / n_alive - fraction) > OUTCOME_TOLERANCE:
        return alive & (values <= kth_smallest(values[alive], cap))     # capped or topped up (search._prune_relaxed)
    return below


def kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest entry (1-based, clamped to the tensor) by a sort: kthvalue has no deterministic
    CUDA implementation (it raises under --deterministic there); sort has."""
    return torch.sort(values.flatten()).values[max(1, min(values.numel(), k)) - 1]


def _pack(bits: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(bits.detach().cpu().numpy().astype(np.uint8)))


def _count_differences(a: torch.Tensor, b: torch.Tensor) -> int:
    return int(np.unpackbits(np.bitwise_xor(a.numpy(), b.numpy())).sum())


@dataclass
class SettleStop:
    """The early-stop rule of one search (see the module doc); `observe` at each evaluation point."""
    tolerance: float                  # share of the level's surviving prunable weights
    window: int                       # earlier evaluation points the current set is compared with
    mode: str                         # threshold | target | fraction
    threshold: float                  # alpha
    fraction: float                   # --pruning_fraction (target and fraction modes)
    total_steps: int                  # steps of the full search
    start_iteration: int = 0          # the search's first iteration (the rewind step)
    every: int = 0                    # iterations between evaluation points (0: only the run's start)
    alive: Optional[torch.Tensor] = None
    n_alive: int = 0
    history: list = field(default_factory=list)   # [(iteration, packed set)], the last window + 1
    trace: list = field(default_factory=list)     # [(iteration, |P| / surviving, max change vs window / |P|)]
    stopped_at: Optional[int] = None

    def bind(self, alive: torch.Tensor) -> None:
        """The entries (a bool tensor over the flat mask) that survive into this search."""
        self.alive = alive
        self.n_alive = int(alive.sum())

    def is_point(self, iteration: int) -> bool:
        """Whether the rule looks at the masks after this iteration: the run's start and every multiple
        of `every` iterations (counted from iteration 0, so `1ep` means each epoch boundary)."""
        return iteration == self.start_iteration or (self.every > 0 and iteration % self.every == 0)

    @torch.no_grad()
    def observe(self, iteration: int, values: torch.Tensor) -> bool:
        """Record the would-be-pruned set at this evaluation point; True: the search ends here."""
        if self.stopped_at is not None:
            return iteration >= self.stopped_at
        self.history = [(it, s) for it, s in self.history if it < iteration]
        self.trace = [t for t in self.trace if t[0] < iteration]
        current = would_prune(values, self.alive, self.n_alive, self.mode, self.threshold, self.fraction)
        size = int(current.sum())
        packed = _pack(current)
        earlier = self.history[-self.window:]
        change = max((_count_differences(packed, s) for _, s in earlier), default=size)
        share = change / max(1, size)
        self.trace.append((iteration, round(size / max(1, self.n_alive), 6), round(share, 6)))
        self.history = (self.history + [(iteration, packed)])[-self.window:]
        past_ramp = self.mode != "target" or iteration - self.start_iteration >= RAMP * self.total_steps
        if len(earlier) == self.window and size > 0 and past_ramp and change <= self.tolerance * size:
            self.stopped_at = iteration
            return True
        return False

    def summary(self) -> dict[str, Any]:
        """What search_metrics.json records about the rule and where it stopped."""
        return {"tolerance": self.tolerance, "window": self.window, "every": self.every,
                "stopped_at_iteration": self.stopped_at,
                "search_steps": (self.stopped_at if self.stopped_at is not None
                                 else self.start_iteration + self.total_steps) - self.start_iteration,
                "planned_steps": self.total_steps,
                "trace_iteration_share_in_set_change": [list(t) for t in self.trace]}   # see `trace`

    def state_dict(self) -> dict[str, Any]:
        return {"history_iterations": [it for it, _ in self.history], "history_sets": [s for _, s in self.history],
                "trace": torch.tensor(self.trace, dtype=torch.float64) if self.trace else torch.zeros(0, 3,
                                                                                                     dtype=torch.float64),
                "stopped_at": self.stopped_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [(int(it), s.cpu()) for it, s in zip(state["history_iterations"], state["history_sets"])]
        self.trace = [(int(row[0]), float(row[1]), float(row[2])) for row in state["trace"].tolist()]
        self.stopped_at = None if state.get("stopped_at") is None else int(state["stopped_at"])


DEFAULT_TOLERANCE = 0.01
DEFAULT_WINDOW = 5
DEFAULT_EVERY = "1ep"


@dataclass(kw_only=True)
class EarlyStopHparams(Hparams):
    """The early-stop flags of the concave searches (a base of their hyperparameter classes)."""
    early_stop: str = hp("off", "settled: end the search at the first evaluation point (epoch boundary) where the "
                         "non-empty set of weights it would prune differs by at most --early_stop_tolerance of its "
                         "size from the set at each of the --early_stop_window previous points; off: search for "
                         "the whole --training_steps.", choices=list(EARLY_STOP_CHOICES))
    early_stop_tolerance: float = hp(DEFAULT_TOLERANCE, "With --early_stop=settled: largest change of the "
                                     "would-be-pruned set (entries in one set only), as a share of its size.",
                                     range="[0, 1)")
    early_stop_window: int = hp(DEFAULT_WINDOW, "With --early_stop=settled: how many previous evaluation points "
                                "the current set must agree with.", range=">= 1")
    early_stop_every: str = hp(DEFAULT_EVERY, "With --early_stop=settled: the evaluation points, every "
                               "<E>ep<I>it (counted from iteration 0; not zero); e.g. 100it for short rounds.")

    def validate(self) -> None:
        super().validate()
        if Step.is_zero_str(self.early_stop_every, flag="early_stop_every"):
            raise HparamError(f"invalid --early_stop_every {self.early_stop_every}: must be more than zero "
                              "iterations (e.g. 1ep, 100it)")
        changed = [f"--{name}={getattr(self, name)}" for name, default in
                   (("early_stop_tolerance", DEFAULT_TOLERANCE), ("early_stop_window", DEFAULT_WINDOW),
                    ("early_stop_every", DEFAULT_EVERY)) if getattr(self, name) != default]
        if self.early_stop == "off" and changed:
            # they would change the experiment's name without changing what it does
            raise HparamError(f"{' '.join(changed)}: only with --early_stop=settled (now off)")

    def settle_stop(self, mode: str, threshold: float, fraction: float, start: Step,
                    total_steps: int) -> Optional["SettleStop"]:
        """The rule for one search starting at `start`, or None when early stopping is off."""
        if self.early_stop == "off":
            return None
        every = Step.from_str(self.early_stop_every, start.iterations_per_epoch).iteration
        return SettleStop(tolerance=self.early_stop_tolerance, window=self.early_stop_window, mode=mode,
                          threshold=threshold, fraction=fraction, total_steps=total_steps,
                          start_iteration=start.iteration, every=every)
