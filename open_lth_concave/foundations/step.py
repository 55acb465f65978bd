"""Training positions written as `<E>ep`, `<I>it` or `<E>ep<I>it`, measured in iterations."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from open_lth_concave.foundations.errors import HparamError, StepError  # noqa: F401  (StepError: importers' name)

_STEP = re.compile(r"^(?:(\d+)ep)?(?:(\d+)it)?$")


@total_ordering
@dataclass(frozen=True)
class Step:
    iteration: int              # total iterations since the start of training
    iterations_per_epoch: int

    def __post_init__(self) -> None:
        if self.iterations_per_epoch <= 0:
            raise StepError(f"iterations per epoch must be positive, got {self.iterations_per_epoch}")
        if self.iteration < 0:
            raise StepError(f"a step cannot be negative, got {self.iteration} iterations")

    @staticmethod
    def check_str(text: str, flag: str = "step") -> tuple[int, int]:
        """(epochs, iterations) of a step string, or a one-line error naming the value and the forms."""
        match = _STEP.match(text.strip()) if isinstance(text, str) else None
        if not match or not text.strip() or (match.group(1) is None and match.group(2) is None):
            raise HparamError(f"malformed step {text!r} for --{flag}: use <E>ep, <I>it or <E>ep<I>it (e.g. 160ep, 500it, 2ep100it)")
        ep, it = int(match.group(1) or 0), int(match.group(2) or 0)
        if ep > 10**9 or it > 10**12:
            raise HparamError(f"step {text!r} for --{flag} is too large")
        return ep, it

    @staticmethod
    def is_zero_str(text: str, flag: str = "step") -> bool:
        """Whether a (well-formed) step string means zero iterations: `0ep`, `0it`, `0ep0it`."""
        return Step.check_str(text, flag=flag) == (0, 0)

    @classmethod
    def from_str(cls, text: str, iterations_per_epoch: int) -> "Step":
        ep, it = cls.check_str(text)
        return cls(ep * iterations_per_epoch + it, iterations_per_epoch)

    @classmethod
    def from_epoch(cls, ep: int, it: int, iterations_per_epoch: int) -> "Step":
        return cls(ep * iterations_per_epoch + it, iterations_per_epoch)

    @classmethod
    def zero(cls, iterations_per_epoch: int) -> "Step":
        return cls(0, iterations_per_epoch)

    @property
    def ep(self) -> int:
        return self.iteration // self.iterations_per_epoch

    @property
    def it(self) -> int:
        return self.iteration % self.iterations_per_epoch

    @property
    def ep_it_str(self) -> str:
        return f"ep{self.ep}_it{self.it}"

    def __str__(self) -> str:
        return f"{self.ep}ep{self.it}it"

    def _same(self, other: "Step") -> None:
        if not isinstance(other, Step):
            raise TypeError(f"cannot compare a Step with {type(other).__name__}")
        if other.iterations_per_epoch != self.iterations_per_epoch:
            raise StepError("steps with different epoch lengths cannot be compared or combined")

    def __lt__(self, other: "Step") -> bool:
        self._same(other)
        return self.iteration < other.iteration

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Step):
            return NotImplemented
        self._same(other)
        return self.iteration == other.iteration

    def __hash__(self) -> int:
        return hash((self.iteration, self.iterations_per_epoch))

    def __add__(self, other: "Step") -> "Step":
        self._same(other)
        return Step(self.iteration + other.iteration, self.iterations_per_epoch)

    def __sub__(self, other: "Step") -> "Step":
        self._same(other)
        return Step(self.iteration - other.iteration, self.iterations_per_epoch)
