"""Running a branch on levels of a finished lottery trunk (`open_lth lottery_branch NAME`).

Per level L it writes into `level_L/lottery_branch_<name>_<hash>`: the branch's record (branch.json),
then whatever the branch function writes; each level's result is printed as one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from open_lth_concave.branches import base
from open_lth_concave.foundations import layout
from open_lth_concave.foundations.hparams import HparamError, Hparams


@dataclass
class BranchRunner:
    branch: base.Branch
    args: Hparams                      # the branch's own arguments
    extra_groups: dict[str, Hparams]   # e.g. retrain's dataset/training copies
    trunk: object                      # the trunk's LotteryRunner, set up (data, steps, rewind model)
    levels: list[int]
    levels_text: str                   # --levels as given, for the banner

    @classmethod
    def on_trunk(cls, trunk, branch: base.Branch, args: Hparams, extra_groups: dict[str, Hparams], levels_text: str,
                 trunk_levels: Optional[int] = None) -> "BranchRunner":
        """Checks the trunk (it exists, has the levels asked for, was made with the same hyperparameters)
        and sets it up; `trunk_levels` is how many levels it has (default: the highest on disk)."""
        existing = sorted(n for n in map(layout.level_number, trunk.replicate_dir.glob(layout.NUMBERED_LEVEL_GLOB))
                          if n is not None)
        max_level = trunk_levels if trunk_levels is not None else (existing[-1] if existing else -1)
        if max_level < 0:
            raise HparamError(f"no lottery trunk at {trunk.replicate_dir}: run `open_lth lottery` with the same "
                              "flags first")
        levels = base.parse_levels(levels_text, max_level)
        trunk.check_record(write=False)  # the trunk must have been made with these hyperparameters
        trunk.setup()
        return cls(branch, args, extra_groups, trunk, levels, levels_text)

    @property
    def output_dirs(self) -> dict[int, Path]:
        return {level: self.trunk.level_dir(level) / self.branch.hashname(self.args, self.extra_groups)
                for level in self.levels}

    def run(self) -> None:
        from open_lth_concave.training.experiment import banner
        trunk = self.trunk
        for level in self.levels:
            if not (trunk.main_dir(level) / layout.MASK).exists():
                raise HparamError(f"trunk level {level} has no mask at {trunk.main_dir(level)}: run the lottery first")
        groups = [self.args.display()] + [
            f"{group._group_name} ({prefix})\n" + group.display().split("\n", 1)[1] if "\n" in group.display()
            else f"{group._group_name} ({prefix})" for prefix, group in sorted(self.extra_groups.items())]
        outs = self.output_dirs
        location = "\n".join(str(out) for out in outs.values())
        print(banner(f"Lottery Branch {self.branch.name} (Replicate {trunk.replicate}, levels {self.levels_text})",
                     trunk.desc.display() + "\n" + "\n".join(groups), location, trunk.platform,
                     trunk.desc.training_hparams), flush=True)
        for level, out in outs.items():
            base.record(out, self.branch, self.args, self.extra_groups, trunk.replicate_dir, level)
            self.branch.fn(base.BranchContext(trunk, level, out, self.extra_groups), **self.args.to_dict())
            print(base.result_line(level, self.branch.name, out), flush=True)
