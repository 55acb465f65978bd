"""When a training run checks its loss, checkpoints and evaluates: the run's schedule of steps.

An epoch boundary after the run's start is where the training loss seen since the last boundary is
checked (a NaN stops the run) and a checkpoint is written. Evaluation points depend on `evaluate`:
"epochs" (open_lth's default: each epoch start, plus the start and end steps when they fall mid-epoch),
"ends" (`--evaluate_only_at_end`: the start and end steps) or "end" (the end step only: stacked
replicates). The end of a run, and an early stop, is always evaluated (`loop.run_steps`).
"""
from __future__ import annotations

from dataclasses import dataclass

from open_lth_concave.foundations.step import Step

EVALUATE = ("epochs", "ends", "end")


@dataclass(frozen=True)
class Schedule:
    start: Step
    end: Step
    evaluate: str = "epochs"

    def __post_init__(self):
        if self.evaluate not in EVALUATE:
            raise ValueError(f"unknown evaluation schedule {self.evaluate!r}; valid: {', '.join(EVALUATE)}")

    def epoch_boundary(self, at: Step) -> bool:
        """Check the training loss and write a checkpoint here."""
        return at.it == 0 and at != self.start

    def evaluate_at(self, at: Step) -> bool:
        if self.evaluate == "end":
            return at == self.end
        if self.evaluate == "ends":
            return at == self.start or at == self.end
        return at.it == 0 or at == self.start or at == self.end


def unreachable_milestones(training, iterations_per_epoch: int) -> str:
    """A warning when --milestone_steps lie at or past the end of --training_steps (a preset's schedule kept
    with a shorter run: its lr drops never happen), else ''."""
    if not training.milestone_steps:
        return ""
    end = Step.from_str(training.training_steps, iterations_per_epoch)
    late = [m.strip() for m in training.milestone_steps.split(",")
            if m.strip() and Step.from_str(m.strip(), iterations_per_epoch) >= end]
    if not late:
        return ""
    return (f"--milestone_steps {','.join(late)} lie at or after the end of --training_steps {training.training_steps}: "
            "those lr drops never happen; set --milestone_steps for this length")
