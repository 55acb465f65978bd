"""The output layout: every file and folder name under the results root, defined once here.

Everything that writes or reads results asks this module for names and paths; no other module spells
one (tests/test_architecture.py checks it). The layout, as open_lth lays it out:

    <root>/lottery_<hash>/hparams.json              the experiment's record (foundations/record.py)
    <root>/lottery_<hash>/replicate_N/report.json   per level: remaining weights, accuracy, times
    .../replicate_N/level_pretrain/main/            pretraining or rewinding
    .../replicate_N/level_L/main/                   the level's ticket, a training run folder with the
        level's mask.pth, sparsity_report.json, pruning.json
    .../replicate_N/level_L/pruning/                what the pruning strategy keeps (its search run: search/)
    .../replicate_N/level_L/lottery_branch_<name>_<hash>/   a branch (branch.json)
    .../replicate_N/tensorboard/                    with --tensorboard
    <root>/train_<hash>/replicate_N/main/           `open_lth train`
    <root>/compare_<hash>/                          `open_lth compare`'s tables and figures

A training run folder holds model_ep<E>_it<I>.pth (start and end), logger, timing.json, platform.json,
hparams.log (the banner's hyperparameters), checkpoint.pth while it runs, strategy_final.pth (a
training strategy's final state), and a folder that is in use holds .lock.

The readers of a run or level folder (validated) live in `open_lth_concave/results.py`, one floor up:
they need the mask and the logger, which this ground floor does not know.

A plug-in declares the files it adds to a folder with `declare(key, name, owner)`; a name the core or
another plug-in already uses is refused, and a reader finds a plug-in's file by its key with
`plugin_file(key)` (None when no loaded plug-in declared it).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

# ---- experiments and replicates -----------------------------------------------------------------------
LOTTERY_PREFIX = "lottery"        # lottery_<hash>
TRAIN_PREFIX = "train"            # train_<hash>
COMPARE_PREFIX = "compare"        # compare_<hash>
HPARAMS_RECORD = "hparams.json"   # every hyperparameter of the experiment, written once
REPORT = "report.json"            # a lottery replicate's per-level numbers
TENSORBOARD = "tensorboard"       # --tensorboard's event files, in the replicate folder
_REPLICATE = "replicate_"
_LEVEL = "level_"
PRETRAIN_LEVEL = "pretrain"       # level_pretrain

# ---- a level --------------------------------------------------------------------------------------------
MAIN = "main"                     # the level's ticket (or `open_lth train`'s run)
PRUNING = "pruning"               # what the pruning strategy keeps
SEARCH = "search"                 # a strategy's own training run, under pruning/
MASK = "mask.pth"
SPARSITY_REPORT = "sparsity_report.json"
PRUNING_RECORD = "pruning.json"
BRANCH_PREFIX = "lottery_branch_"  # level_L/lottery_branch_<name>_<hash>
BRANCH_RECORD = "branch.json"

# ---- a training run folder --------------------------------------------------------------------------------
_MODEL = "model_"
MODEL_GLOB = f"{_MODEL}ep*_it*.pth"
LOGGER = "logger"
TIMING = "timing.json"
PLATFORM = "platform.json"
HPARAMS_LOG = "hparams.log"
CHECKPOINT = "checkpoint.pth"
REJECTED_CHECKPOINT = "checkpoint.rejected.pth"   # a checkpoint found damaged, set aside (the last one)
STRATEGY_FINAL = "strategy_final.pth"
STACKED_RECORD = "stacked.json"   # which replicates were trained together
LOCK = ".lock"
CONTENT_HASHES = ".content_hashes.json"   # sha256 of every file written in the folder (foundations/io.py)

# ---- `open_lth compare`'s folder ------------------------------------------------------------------------------
COMPARISON = "comparison"         # comparison.csv, .md, .json, .png


def comparison_file(suffix: str) -> str:
    return f"{COMPARISON}.{suffix}"


FIGURES = ("learning_curves.png", "mask_histograms.png", "layer_remaining.png")   # report/figures.py's

CORE_NAMES = (HPARAMS_RECORD, REPORT, TENSORBOARD, MAIN, PRUNING, SEARCH, MASK, SPARSITY_REPORT, PRUNING_RECORD,
              BRANCH_RECORD, LOGGER, TIMING, PLATFORM, HPARAMS_LOG, CHECKPOINT, STRATEGY_FINAL, STACKED_RECORD, LOCK,
              CONTENT_HASHES, REJECTED_CHECKPOINT)


def experiment_name(prefix: str, digest: str) -> str:
    """`lottery_<hash>`, `train_<hash>`, `compare_<hash>`."""
    return f"{prefix}_{digest}"


def replicate_dir(experiment_dir: Path, replicate: int) -> Path:
    return Path(experiment_dir) / f"{_REPLICATE}{replicate}"


def replicate_number(path: Path) -> Optional[int]:
    """N of a `replicate_N` folder, else None."""
    match = re.fullmatch(rf"{_REPLICATE}(\d+)", Path(path).name)
    return int(match.group(1)) if match else None


REPLICATE_GLOB = f"{_REPLICATE}*"


def level_dir(replicate: Path, level: int | str) -> Path:
    """`level_L` (or `level_pretrain`) of a replicate folder."""
    return Path(replicate) / f"{_LEVEL}{level}"


def level_number(path: Path) -> Optional[int]:
    """L of a `level_L` folder (not level_pretrain), else None."""
    match = re.fullmatch(rf"{_LEVEL}(\d+)", Path(path).name)
    return int(match.group(1)) if match else None


def level_name(path: Path) -> Optional[str]:
    """What follows `level_` in a folder name (`3`, `pretrain`), else None."""
    name = Path(path).name
    return name[len(_LEVEL):] if name.startswith(_LEVEL) else None


LEVEL_GLOB = f"{_LEVEL}*"
NUMBERED_LEVEL_GLOB = f"{_LEVEL}[0-9]*"


def main_dir(replicate: Path, level: int | str) -> Path:
    return level_dir(replicate, level) / MAIN


def branch_name(name: str, digest: str) -> str:
    """The folder of branch `name` with arguments hashed to `digest`, inside a level folder."""
    return f"{BRANCH_PREFIX}{name}_{digest}"


def model_file(step) -> str:
    """model_ep<E>_it<I>.pth: the weights at a `foundations.step.Step`."""
    return f"{_MODEL}{step.ep_it_str}.pth"


def stacked_checkpoint(replicates: list[int]) -> str:
    """The checkpoint of replicates trained together (`open_lth train --replicates_together`)."""
    return f"stacked_checkpoint_{'_'.join(str(r) for r in replicates)}.pth"


# ---- plug-ins' own files ------------------------------------------------------------------------------------
_DECLARED: dict[str, tuple[str, str]] = {}   # key -> (file or folder name, owner)


def declare(key: str, name: str, owner: str) -> str:
    """A plug-in's own file or folder name (e.g. declare("scores", "scores.pth", owner="my_plugin"));
    returns `name`. Declaring again the same is harmless; a name the core or another key uses is refused."""
    if name in CORE_NAMES:
        raise ValueError(f"{owner} declares {name!r}, a name of the core's output layout")
    for other, (taken, by) in _DECLARED.items():
        if taken == name and other != key:
            raise ValueError(f"{owner} declares {name!r}, which {by} already declared as {other!r}")
    if key in _DECLARED and _DECLARED[key][0] != name:
        raise ValueError(f"{owner} declares {key!r} as {name!r}; {_DECLARED[key][1]} declared it as {_DECLARED[key][0]!r}")
    _DECLARED[key] = (name, owner)
    return name


def plugin_file(key: str) -> Optional[str]:
    """The name a loaded plug-in declared under `key`, or None."""
    return _DECLARED[key][0] if key in _DECLARED else None
