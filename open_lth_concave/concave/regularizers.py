"""Concave penalties r: [0,1] -> [0,1] on the relaxed mask (Assumption 1 of the paper).

Each regularizer is registered by name and owns its hyperparameter dataclass (e.g. `log` owns
`epsilon`). Registering one here is all it takes to get a pruning strategy `concave_<name>`
(see `concave/strategies.py`) and a curve in `open_lth illustrate`. A new penalty is a few lines:
subclass `Regularizer`, give `value` (and `derivative`, used by tests and solvers), register.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from open_lth_concave.foundations.hparams import Hparams, hp
from open_lth_concave.foundations.registry import Registry


@dataclass(kw_only=True)
class NoHparams(Hparams):
    _group_name: ClassVar[str] = "Regularizer Hyperparameters"


class Regularizer:
    """r(m) applied elementwise; R(m) = sum r(m_i)."""
    hparams_cls: ClassVar[type[Hparams]] = NoHparams
    default_lambda: ClassVar[float] = 1e-6
    strictly_concave: ClassVar[bool] = True
    # how plots and tables show `concave_<name>` ("Concave <display_name>"; None: the registered name)
    display_name: ClassVar[str | None] = None
    color: ClassVar[str | None] = None
    marker: ClassVar[str] = "o"
    legend_symbols: ClassVar[dict[str, str]] = {}    # its own fields' short names in legends (e.g. epsilon: ε)
    # r'(m) as a C expression of the float `m` and the constants c[0..3] (`native_constants`), for the
    # soft-mask search's one-pass CPU step (`native_step.py`); None: that search takes the eager path
    native_derivative: ClassVar[str | None] = None

    def __init__(self, hparams: Hparams | None = None):
        self.hparams = hparams if hparams is not None else self.hparams_cls()
        self.hparams.validate()

    def value(self, m: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, m: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def total(self, m: torch.Tensor) -> torch.Tensor:
        return self.value(m).sum()

    def native_constants(self) -> tuple[float, ...]:
        """The values of c[0..3] in `native_derivative` (at most four)."""
        return ()

    def add_derivative_(self, grad: torch.Tensor, m: torch.Tensor, scale: float) -> None:
        """grad += scale * r'(m), in place: the training step's penalty gradient (override to save passes)."""
        grad.add_(self.derivative(m), alpha=scale)


registry: Registry[type[Regularizer]] = Registry("regularizer")


@dataclass(frozen=True)
class MaskPenalty:
    """The penalty lambda * sum_i r(m_i) of one search, resolved once: the registered regularizer's name,
    its instance (with its own hyperparameters, e.g. epsilon) and lambda (given, else its default)."""
    name: str
    regularizer: Regularizer
    lam: float

    @classmethod
    def resolve(cls, name: str, lam: float | None = None, values: dict | None = None) -> "MaskPenalty":
        """`values`: any hyperparameters (e.g. a concave strategy's); the regularizer takes its own fields."""
        import dataclasses
        reg_cls = registry.get(name)
        own = {f.name for f in dataclasses.fields(reg_cls.hparams_cls)}
        regularizer = reg_cls(reg_cls.hparams_cls(**{k: v for k, v in (values or {}).items() if k in own}))
        return cls(name, regularizer, float(reg_cls.default_lambda if lam is None else lam))


@registry.register("l1")
class L1(Regularizer):
    """r(m) = m: the convex limit case (the l1 norm restricted to [0,1])."""
    default_lambda = 3e-6
    strictly_concave = False
    display_name, color, marker = "ℓ1", "#d62728", "s"
    native_derivative = "1.0f"

    def value(self, m: torch.Tensor) -> torch.Tensor:
        return m

    def derivative(self, m: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(m)

    def add_derivative_(self, grad: torch.Tensor, m: torch.Tensor, scale: float) -> None:
        grad.add_(scale)


@dataclass(kw_only=True)
class LogHparams(Hparams):
    _group_name: ClassVar[str] = "Log Regularizer Hyperparameters"
    epsilon: float = hp(0.1, "epsilon of the log penalty r(m)=log((m+eps)/eps)/log((1+eps)/eps); smaller is closer to l0.",
                        range="> 0")


@registry.register("log")
class Log(Regularizer):
    """r(m) = log((m+eps)/eps) / log((1+eps)/eps) (Candes, Wakin, Boyd)."""
    hparams_cls = LogHparams
    default_lambda = 1e-6
    display_name, color, marker = "log", "#2ca02c", "^"
    legend_symbols = {"epsilon": "ε"}
    native_derivative = "c[1] / (m + c[0])"

    def native_constants(self) -> tuple[float, ...]:
        return (self.hparams.epsilon, 1.0 / self._scale())

    def _scale(self) -> float:
        eps = self.hparams.epsilon
        return math.log((1 + eps) / eps)

    def value(self, m: torch.Tensor) -> torch.Tensor:
        return torch.log1p(m * (1.0 / self.hparams.epsilon)) * (1.0 / self._scale())

    def derivative(self, m: torch.Tensor) -> torch.Tensor:
        return (m + self.hparams.epsilon).reciprocal_().mul_(1.0 / self._scale())

    def add_derivative_(self, grad: torch.Tensor, m: torch.Tensor, scale: float) -> None:
        # two passes (m + eps, then grad += c * 1 / (m + eps)) instead of three with a reciprocal
        grad.addcdiv_(torch.ones((), dtype=grad.dtype, device=grad.device), m + self.hparams.epsilon,
                      value=scale / self._scale())


@dataclass(kw_only=True)
class LqHparams(Hparams):
    _group_name: ClassVar[str] = "Lq Regularizer Hyperparameters"
    q: float = hp(0.5, "exponent of the lq penalty r(m)=m^q; smaller is closer to l0.", range="(0, 1]")


_LQ_FLOOR = 1e-8  # r'(0) is infinite for q < 1: below the floor r is the chord m * floor^(q-1)


@registry.register("lq")
class Lq(Regularizer):
    """r(m) = m^q with 0 < q <= 1 (Foucart and Lai); linear on [0, 1e-8] so r(0)=0 with a finite slope."""
    hparams_cls = LqHparams
    default_lambda = 1e-6
    display_name, color = "ℓq", "#9467bd"
    native_derivative = "(m < c[0] ? c[1] : c[2] * powf(m, c[3]))"

    def native_constants(self) -> tuple[float, ...]:
        q = self.hparams.q
        return (_LQ_FLOOR, _LQ_FLOOR ** (q - 1), q, q - 1)

    def value(self, m: torch.Tensor) -> torch.Tensor:
        q = self.hparams.q
        return torch.where(m < _LQ_FLOOR, m * _LQ_FLOOR ** (q - 1), m.clamp_min(_LQ_FLOOR) ** q)

    def derivative(self, m: torch.Tensor) -> torch.Tensor:
        q = self.hparams.q
        return torch.where(m < _LQ_FLOOR, torch.full_like(m, _LQ_FLOOR ** (q - 1)),
                           q * m.clamp_min(_LQ_FLOOR) ** (q - 1))


@dataclass(kw_only=True)
class McpHparams(Hparams):
    _group_name: ClassVar[str] = "MCP Regularizer Hyperparameters"
    mcp_gamma: float = hp(1.0, "gamma of the minimax concave penalty; 1 is the most concave.", range=">= 1")


@registry.register("mcp")
class Mcp(Regularizer):
    """Minimax concave penalty (Zhang 2010) on [0,1], scaled so r(1)=1: (m - m^2/(2g)) / (1 - 1/(2g))."""
    hparams_cls = McpHparams
    default_lambda = 1e-6
    display_name, color = "MCP", "#8c564b"
    native_derivative = "(1.0f - m / c[0]) / c[1]"

    def native_constants(self) -> tuple[float, ...]:
        g = self.hparams.mcp_gamma
        return (g, 1 - 1 / (2 * g))

    def value(self, m: torch.Tensor) -> torch.Tensor:
        g = self.hparams.mcp_gamma
        return (m - m * m / (2 * g)) / (1 - 1 / (2 * g))

    def derivative(self, m: torch.Tensor) -> torch.Tensor:
        g = self.hparams.mcp_gamma
        return (1 - m / g) / (1 - 1 / (2 * g))
