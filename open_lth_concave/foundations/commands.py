"""The core's subcommands and what each does, in one place: `open_lth`'s listing reads it without importing
anything heavy (torch), and each subcommand's parser takes its description from it."""
from __future__ import annotations

COMMANDS: dict[str, str] = {
    "train": "Train a dense network.",
    "lottery": "Find lottery tickets: level 0 dense, then --levels pruning levels with rewinding.",
    "lottery_branch": "Run a branch experiment on the levels of a finished lottery trunk.",
    "compare": "Run strategies side by side and write tables and plots.",
    "summary": "Print what a run directory holds.",
}
