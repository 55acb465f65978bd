"""Pruning strategies: the registry, the interface, and the context the lottery runner hands them.

A strategy turns level L-1 into level L's mask. IMP needs only the previous trained model; a
strategy that searches (the concave plug-in) also needs the rewind point, the data and a way to run
training with a training strategy of its own, which `PruningContext.train` provides. Whatever a
strategy keeps besides the mask goes into `ctx.artifacts_dir` (next to the level's `main` run).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional, Protocol

from torch import nn

from open_lth_concave.foundations.hparams import PruningHparams, TrainingHparams
from open_lth_concave.foundations.registry import Registry
from open_lth_concave.foundations.step import Step
from open_lth_concave.pruning.mask import Mask

if TYPE_CHECKING:   # annotations only: training sits on pruning.mask, so no import of it at run time here
    from open_lth_concave.training.strategy import TrainingStrategy, TrainResult


class PruningError(RuntimeError):
    """A strategy cannot produce a usable mask (e.g. it would remove a whole layer); says where and why."""


class TrainFn(Protocol):
    """`ctx.train`: trains `model` under `mask` from the rewind step to the end step with this level's
    training hyperparameters, resumably, in `output_dir` (a finished run is loaded back, not repeated),
    with the training strategy `make_strategy(model, mask)` builds (the standard one when None)."""

    def __call__(self, model: nn.Module, mask: Mask, output_dir: Path,
                 make_strategy: Optional[Callable[[nn.Module, Mask], "TrainingStrategy"]] = None,
                 label: str = ...) -> "TrainResult": ...


@dataclass
class PruningContext:
    """What the lottery runner (or open_lth's, through `upstream/`) hands a strategy for one level."""
    level: int                                   # the level whose mask is being made (>= 1)
    current_mask: Mask                           # level L-1's mask
    artifacts_dir: Path                          # this level's folder for strategy outputs
    previous_artifacts_dir: Optional[Path]       # level L-1's folder (None when L-1 == 0)
    trained_model: Callable[[], nn.Module]       # level L-1's trained model (loaded lazily)
    rewind_model: Callable[[], nn.Module]        # fresh model holding the level-0 rewind-point state
    train: TrainFn                               # returns a TrainResult: the trained model and its strategy
    training_hparams: TrainingHparams            # this level's training hyperparameters
    start_step: Step                             # the rewind step, where a level's training starts
    end_step: Step                               # where it ends (both carry the iterations per epoch)
    replicate: int = 1                           # e.g. to seed a random strategy

    @property
    def iterations_per_epoch(self) -> int:
        return self.end_step.iterations_per_epoch


class PruningStrategy:
    hparams_cls: ClassVar[type[PruningHparams]] = PruningHparams
    # False when a level's mask does not depend on the previous level's trained ticket, so the
    # runner may skip training intermediate tickets (`--train_final_ticket_only`).
    needs_trained_model: ClassVar[bool] = True
    description: ClassVar[str] = ""
    # How plots and tables show the strategy (report/): a name, a matplotlib colour and marker, a line style.
    display_name: ClassVar[Optional[str]] = None     # None: the registered name
    color: ClassVar[Optional[str]] = None            # None: the next free colour of the report's palette
    marker: ClassVar[str] = "o"
    line_style: ClassVar[str] = "-"

    # a legend's short name of a hyperparameter (e.g. {"regularization_lambda": "λ"}); else the field's name
    legend_symbols: ClassVar[dict[str, str]] = {"pruning_fraction": "fraction"}

    @classmethod
    def line_style_of(cls, pruning_hparams: dict[str, Any]) -> str:
        """The line style of one run, from its recorded pruning hyperparameters (a variant may differ)."""
        return cls.line_style

    @classmethod
    def legend_values(cls, pruning_hparams: dict[str, Any]) -> dict[str, Any]:
        """Settings a legend always shows for one run, default or not, from its recorded pruning
        hyperparameters (e.g. a threshold in force that derives from another field); none by default."""
        return {}

    def __init__(self, hparams: PruningHparams):
        self.hparams = hparams

    def prune(self, ctx: PruningContext) -> Mask:
        raise NotImplementedError

    @classmethod
    def level_notes(cls, artifacts_dir: Path) -> list[str]:
        """Lines `open_lth summary` shows for one level's pruning artifacts (what the strategy kept in
        `level_L/pruning/`); none by default. Must not fail on missing or damaged files."""
        return []


registry: Registry[type[PruningStrategy]] = Registry("pruning strategy", "pruning strategies")


def layers_to_ignore(text: Optional[str]) -> set[str]:
    return {part.strip() for part in (text or "").split(",") if part.strip()}
