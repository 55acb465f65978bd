"""Job descriptions: the hyperparameter groups of a job, and the experiment name hashed from them."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

from open_lth_concave.foundations import layout
from open_lth_concave.foundations.hparams import (DatasetHparams, HparamError, Hparams, ModelHparams,
                                                  PruningHparams, TrainingHparams)


def hash_of(groups: list[Optional[Hparams]]) -> str:
    """md5 over the canonical texts of the present groups joined with ';' (open_lth's rule)."""
    text = ";".join(g.canonical() for g in groups if g is not None)
    return hashlib.md5(text.encode("utf-8")).hexdigest()


@dataclass
class Desc:
    """Base: groups are the dataclass fields ending in `_hparams`, hashed in field-name order."""
    prefix = "job"

    def groups(self) -> list[Optional[Hparams]]:
        names = sorted(f.name for f in fields(self) if f.name.endswith("_hparams"))
        return [getattr(self, n) for n in names]

    @property
    def hashname(self) -> str:
        return layout.experiment_name(self.prefix, hash_of(self.groups()))

    def run_path(self, root: Path, replicate: int) -> Path:
        return layout.replicate_dir(Path(root) / self.hashname, replicate)

    def display(self) -> str:
        """The groups as banner text; `pretrain_*` groups are titled "Pretraining ..." as open_lth titles them."""
        names = sorted(f.name for f in fields(self) if f.name.endswith("_hparams"))
        return "\n".join(("Pretraining " if n.startswith("pretrain_") else "") + getattr(self, n).display()
                         for n in names if getattr(self, n) is not None)

    def to_dict(self) -> dict:
        return {f.name: (getattr(self, f.name).to_dict() if getattr(self, f.name) is not None else None)
                for f in fields(self)}


@dataclass
class TrainingDesc(Desc):
    dataset_hparams: DatasetHparams
    model_hparams: ModelHparams
    training_hparams: TrainingHparams
    # the training strategy's own hyperparameters (None when it has none, as `standard`): a group of
    # their own in the name, so every experiment trained with `standard` keeps open_lth's name
    training_strategy_hparams: Optional[Hparams] = None
    prefix = layout.TRAIN_PREFIX


@dataclass
class LotteryDesc(Desc):
    dataset_hparams: DatasetHparams
    model_hparams: ModelHparams
    training_hparams: TrainingHparams
    pruning_hparams: PruningHparams
    pretrain_dataset_hparams: Optional[DatasetHparams] = None
    pretrain_training_hparams: Optional[TrainingHparams] = None
    prefix = layout.LOTTERY_PREFIX

    @property
    def pretrains(self) -> bool:
        return self.pretrain_training_hparams is not None

    @property
    def rewinds_in_place(self) -> bool:
        """Pretraining on the same data and schedule = rewinding: the main run resumes at its end."""
        return self.pretrains and self.pretrain_dataset_hparams == self.dataset_hparams and \
            _same_schedule(self.pretrain_training_hparams, self.training_hparams)

    def check_training_strategies(self, command: str = "lottery") -> None:
        """Tickets and pretraining train with the standard strategy (a pruning strategy chooses the
        training of its own search), so another --training_strategy is refused rather than ignored."""
        require_standard_training(self.training_hparams, "", command)
        if self.pretrain_training_hparams is not None:
            require_standard_training(self.pretrain_training_hparams, "pretrain_", command)

    def validate_steps(self, iterations_per_epoch: int) -> None:
        from open_lth_concave.foundations.step import Step
        end = Step.from_str(self.training_hparams.training_steps, iterations_per_epoch)
        if self.rewinds_in_place:
            rewind = Step.from_str(self.pretrain_training_hparams.training_steps, iterations_per_epoch)
            if rewind > end:
                raise HparamError(f"invalid --rewinding_steps {self.pretrain_training_hparams.training_steps}: "
                                  f"beyond the training length {self.training_hparams.training_steps} "
                                  f"({rewind.iteration} > {end.iteration} iterations)")


def require_standard_training(training: TrainingHparams, prefix: str, command: str) -> None:
    if training.training_strategy != "standard":
        raise HparamError(f"invalid --{prefix}training_strategy {training.training_strategy} for {command}: its "
                          "tickets, pretraining and branches train with the standard strategy (a pruning strategy "
                          "picks its search's, e.g. --pruning_strategy=concave_log); `open_lth train` takes "
                          "other training strategies")


def _same_schedule(a: TrainingHparams, b: TrainingHparams) -> bool:
    from dataclasses import replace
    return replace(a, training_steps=b.training_steps) == b
