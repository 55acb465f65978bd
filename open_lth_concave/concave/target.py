"""Sparsity you can aim: `--pruning_mode=target` adapts the search's shrinkage to a target share.

The masks still decide which weights go where they can (those below alpha at the end of the search are
pruned), but how hard the search pushes masks down is set while it runs: a pressure c >= 0 multiplies the
mask's whole shrinkage, lambda * r'(m) + weight_decay * m (c = 1 is the plain search).

What is steered is q, the target-quantile of the surviving masks (the value below which the target share
lies). It follows a path from where it starts down to alpha over the first `RAMP` of the search (a
half-cosine: it leaves and arrives with zero speed) and then stays at alpha. The law works in the plant's
own units. A mask the loss does not hold moves by -c * u(q) per step, where

    u(q) = lr_t / (1 - momentum) * (lambda * r'(q) + weight_decay * q)

is how far one unit of pressure moves a mask at q in one step (SGD with momentum travels lr/(1 - momentum)
per unit of gradient; the schedule's lr_t included). So, every `every` steps:

- a drift observer estimates d, the velocity the loss alone gives q (what the last interval moved beyond
  what the pressure explains), smoothed;
- the wanted velocity is the path's own slope plus a correction of the error in mask units over `TAU` of
  the search: v = p'(t) + (p(t) - q) / tau;
- c = (d - v) / u(q), never below 0 (a penalty can only push down), and changed by at most a factor
  `RATE` per update (no bang-bang: the concave r'(q) grows as q falls, a positive feedback that an
  unbounded law turns into a collapse).

Evaluating u at the current q is what keeps the concave feedback in check: as q falls, r'(q) grows and c
falls with it. Whether the masks can decide at all is measured once, when the path has covered
`CHECK_AT` of its distance: if the masks above the target share moved down with it as one block (their
distance to q is below `SEPARATION` of the distance q has travelled), the loss does not order them and
the pressure would only move the whole block. The pressure is then released (c = 0 for the rest of the
search) and the level prunes the target share by mask value, as the hard ablation does (`fallback`).

Deterministic and resumable: its state is a few numbers in the strategy's checkpoint; the quantile comes
from a sort, which is deterministic on CUDA too. The paper has no such mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

RAMP = 0.5            # share of the search over which the quantile travels down to alpha
UPDATES = 250         # controller updates per search at most (one every total_steps // UPDATES steps)
MIN_EVERY = 4         # ... and at least this many steps apart (each update reads the quantile on the host)
TAU = 0.05            # time constant of the error correction, as a share of the search
SMOOTHING = 0.5       # weight of the newest drift observation
RATE = 2.0            # the pressure changes by at most this factor per update
MAX_PRESSURE = 1e9
CHECK_AT = 0.1        # share of the path's distance covered when separability is judged
SEPARATION = 0.05     # ... the masks above the target share must stay this far apart from q, relative to q's travel
OUTCOMES = ("own choice", "capped", "topped up", "fallback")
OUTCOME_TOLERANCE = 0.02   # the masks' own share below alpha counts as their choice within this of the target


@dataclass
class SparsityTarget:
    fraction: float                   # share of the level's survivors that should end below alpha
    threshold: float                  # alpha
    total_steps: int                  # steps of the search
    # lr_t / (1 - momentum) of the mask's optimizer at search step t (0-based): its travel per unit gradient
    travel: Callable[[int], float] = field(default=lambda step: 1.0, repr=False)
    pressure: float = 0.0             # c
    drift: float = 0.0                # the loss's own velocity of q (mask units per step), observed
    steps: int = 0                    # steps observed so far
    start_quantile: Optional[float] = None
    last_quantile: float = 0.0
    last_share: float = 0.0           # share below alpha at the last update
    last_unit: float = 0.0            # u(q) at the last update
    separation: Optional[float] = None   # measured at CHECK_AT: (upper quantile - q) / (q's travel)
    released: bool = False            # the masks did not separate: no pressure from then on
    alive: Optional[torch.Tensor] = None   # bool over the flat mask: the surviving entries (bind)
    n_alive: int = 0
    shrinkage: Optional[Callable[[float], float]] = field(default=None, repr=False)   # lambda r'(q) + decay q

    @property
    def every(self) -> int:
        return max(MIN_EVERY, self.total_steps // UPDATES)

    @property
    def scale(self) -> float:
        """The factor on the mask's shrinkage in force (read by the step)."""
        return self.pressure

    @property
    def ramp_steps(self) -> float:
        return max(1.0, RAMP * self.total_steps)

    def path(self, step: float) -> float:
        """From the starting quantile down to alpha along a half-cosine over the ramp, then alpha."""
        start = self.start_quantile if self.start_quantile is not None else self.threshold
        x = min(1.0, max(0.0, step / self.ramp_steps))
        return self.threshold + (start - self.threshold) * 0.5 * (1.0 + math.cos(math.pi * x))

    def slope(self, step: float) -> float:
        start = self.start_quantile if self.start_quantile is not None else self.threshold
        x = step / self.ramp_steps
        if not 0.0 <= x < 1.0:
            return 0.0
        return -(start - self.threshold) * 0.5 * math.pi * math.sin(math.pi * x) / self.ramp_steps

    def bind(self, alive: torch.Tensor, shrinkage: Optional[Callable[[float], float]] = None) -> None:
        """The entries (a bool tensor over the flat mask) that survive into this search, and the shrinkage
        per unit of pressure at a mask value (lambda r'(m) + weight decay m)."""
        self.alive = alive
        self.n_alive = int(alive.sum())
        if shrinkage is not None:
            self.shrinkage = shrinkage

    def unit(self, q: float, step: int) -> float:
        """u(q): how far one unit of pressure moves a mask at q in one step (> 0)."""
        shrink = self.shrinkage(max(q, 0.0)) if self.shrinkage is not None else 1.0
        return max(1e-30, self.travel(step) * shrink)

    def _quantiles(self, values: torch.Tensor) -> tuple[float, float, float]:
        """The target-quantile, the quantile half-way between it and the top, and the share below alpha
        (one sort: deterministic on every device)."""
        surviving, _ = torch.sort(values[self.alive])
        n = self.n_alive
        k = max(1, min(n, round(self.fraction * n)))
        upper = max(k, min(n, round((self.fraction + 0.5 * (1.0 - self.fraction)) * n)))
        below = int(torch.searchsorted(surviving, torch.tensor([self.threshold], dtype=surviving.dtype,
                                                                  device=surviving.device)).item())
        picked = surviving[[k - 1, upper - 1]].tolist()
        return picked[0], picked[1], below / n

    @torch.no_grad()
    def observe(self, values: torch.Tensor) -> None:
        """After each optimizer step: every `every` steps, read the target-quantile and set the pressure."""
        self.steps += 1
        if self.n_alive == 0 or (self.steps % self.every and self.start_quantile is not None):
            return
        q, upper, share = self._quantiles(values)
        self.last_share = share
        if self.start_quantile is None:                       # the first observation: start the path here
            self.start_quantile = max(q, self.threshold)
            previous = None
        else:
            previous = self.last_quantile
        self.last_quantile = q
        if self.released:
            return
        start, t = self.start_quantile, self.steps
        distance = start - self.threshold
        if self.separation is None and distance > 0 and start - q >= CHECK_AT * distance:
            self.separation = (upper - q) / max(1e-12, start - q)
            if self.separation < SEPARATION:
                self.released, self.pressure = True, 0.0
                return
        u = self.unit(q, t)
        if previous is not None:
            interval = self.every
            observed = (q - previous) / interval + self.pressure * 0.5 * (self.last_unit + u)
            self.drift += SMOOTHING * (observed - self.drift) if self.steps > self.every else observed - self.drift
        tau = max(float(self.every), TAU * self.total_steps)
        wanted = self.slope(t + 0.5 * self.every) + (self.path(t) - q) / tau
        target = max(0.0, (self.drift - wanted) / u)
        if self.pressure > 0:
            target = min(target, RATE * self.pressure)
            target = max(target, self.pressure / RATE) if target > 0 else 0.0
        self.pressure = min(MAX_PRESSURE, target)
        self.last_unit = u

    def outcome(self, below_alpha: int, alive: int, tolerance: float = OUTCOME_TOLERANCE) -> str:
        """What decided the pruned set: the masks' own choice (their share below alpha within `tolerance`
        of the target), the cap (more fell below alpha), a top-up by mask value (fewer did), or the
        fallback (the masks did not separate; the target share is pruned by mask value)."""
        if self.released:
            return "fallback"
        share = below_alpha / max(1, alive)
        if abs(share - self.fraction) <= tolerance:
            return "own choice"
        return "capped" if share > self.fraction else "topped up"

    def state_dict(self) -> dict[str, Any]:
        return {"version": 2, "pressure": self.pressure, "drift": self.drift, "steps": self.steps,
                "start_quantile": self.start_quantile, "last_quantile": self.last_quantile,
                "last_share": self.last_share, "last_unit": self.last_unit, "separation": self.separation,
                "released": self.released}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != 2:
            raise ValueError("the search checkpoint holds the state of an older sparsity-target controller; "
                             "move the search folder away to run the search again with this one")
        self.pressure = float(state["pressure"])
        self.drift = float(state["drift"])
        self.steps = int(state["steps"])
        self.start_quantile = None if state.get("start_quantile") is None else float(state["start_quantile"])
        self.last_quantile = float(state["last_quantile"])
        self.last_share = float(state["last_share"])
        self.last_unit = float(state["last_unit"])
        self.separation = None if state.get("separation") is None else float(state["separation"])
        self.released = bool(state["released"])
