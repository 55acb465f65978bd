"""Pruning strategies: the registry, the interface, and the context the lottery runner hands them.

A strategy turns level L-1 into level L's mask. IMP needs only the previous trained model; a
strategy that searches (the concave plug-in) also needs the rewind point, the data and a way to run
training with a training strategy of its own, which `PruningContext.train` provides. Whatever a
strategy keeps besides the mask goes into `ctx.artifacts_dir` (next to the level's `main` run).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from torch import nn

from open_lth_concave.foundations.hparams import PruningHparams
from open_lth_concave.foundations.registry import Registry
from open_lth_concave.pruning.mask import Mask


class PruningError(RuntimeError):
    """A strategy cannot produce a usable mask (e.g. it would remove a whole layer); says where and why."""


@dataclass
class PruningContext:
    level: int                                   # the level whose mask is being made (>= 1)
    current_mask: Mask                           # level L-1's mask
    artifacts_dir: Path                          # this level's folder for strategy outputs
    previous_artifacts_dir: Optional[Path]       # level L-1's folder (None when L-1 == 0)
    trained_model: Callable[[], nn.Module]       # level L-1's trained model (loaded lazily)
    rewind_model: Callable[[], nn.Module]        # fresh model holding the level-0 rewind-point state
    # train(model, mask, output_dir, make_training_strategy) trains from the rewind step to the end
    # step with this level's training hyperparameters, resumably, and returns (trained model, strategy).
    train: Callable[..., nn.Module]
    extra: dict[str, Any]                        # job facts: replicate, device, quiet, ...


class PruningStrategy:
    hparams_cls: ClassVar[type[PruningHparams]] = PruningHparams
    # False when a level's mask does not depend on the previous level's trained ticket, so the
    # runner may skip training intermediate tickets (`--train_final_ticket_only`).
    needs_trained_model: ClassVar[bool] = True
    description: ClassVar[str] = ""

    def __init__(self, hparams: PruningHparams):
        self.hparams = hparams

    def prune(self, ctx: PruningContext) -> Mask:
        raise NotImplementedError

    @classmethod
    def level_notes(cls, artifacts_dir: Path) -> list[str]:
        """Lines `open_lth summary` shows for one level's pruning artifacts (what the strategy kept in
        `level_L/pruning/`); none by default. Must not fail on missing or damaged files."""
        return []


registry: Registry[type[PruningStrategy]] = Registry("pruning strategy")


def layers_to_ignore(text: Optional[str]) -> set[str]:
    return {part.strip() for part in (text or "").split(",") if part.strip()}
