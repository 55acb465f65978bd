"""What an experiment records about how it was made, and the check that keeps its results unmixed.

`<experiment>/hparams.json` holds every field of every hyperparameter group of the job, defaults
included, written once when the experiment is created and never rewritten. Fields whose declared
default is None ("derived from another field", e.g. a concave strategy's `mask_lr`) are recorded as
declared (None), not as the value derived at run time: the record says what the job asked for.

The experiment's name, like open_lth's, leaves out values equal to their defaults, so when a default
changes between versions the same name stands for other hyperparameters. Every later run under the
name (resumed, reused, a new replicate or more levels) therefore compares its own fully resolved
hyperparameters with the record and stops with one line naming each differing field, its recorded
and current values, and the two ways out: pass the recorded values explicitly (which reproduces the
old experiment under a new name) or move the folder away to start anew.

Records written before this check existed (a hparams.json rewritten by every run, or one from an
older version with fewer fields) are read the same way: fields present in both are compared; fields
the record lacks (hyperparameters added since) are added to it with their current values, once, so
that a later change of their defaults is caught too; recorded fields the code no longer has are
reported as a warning (nothing can compare them). Folders written by open_lth itself have no
hparams.json; the first run here writes it.

Each training run's platform and versions are recorded next to its outputs in `platform.json`
(training/loop.py); a differing platform only warns.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

from open_lth_concave.foundations import distributed, io, layout
from open_lth_concave.foundations.hparams import HparamError

HPARAMS_FILE = layout.HPARAMS_RECORD
PREFIXES = {"pretrain_dataset_hparams": "pretrain_", "pretrain_training_hparams": "pretrain_"}


class HparamsMismatchError(HparamError):
    """An existing experiment was made with other hyperparameters than the current job resolves to."""


def _plain(value: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists, and so on)."""
    return json.loads(json.dumps(value))


def compare(recorded: dict, current: dict) -> tuple[list[tuple[str, str, Any, Any]], list[tuple[str, str]],
                                                    list[tuple[str, str]]]:
    """(differing (group, field, recorded, current), not recorded (group, field), no longer known (group, field))."""
    differing, unrecorded, gone = [], [], []
    for group in sorted(set(recorded) | set(current)):
        rec, cur = recorded.get(group), current.get(group)
        if not isinstance(rec, dict) or not isinstance(cur, dict):
            if rec != cur:
                differing.append((group, "", rec, cur))
            continue
        for name in sorted(set(rec) | set(cur)):
            if name not in rec:
                unrecorded.append((group, name))
            elif name not in cur:
                gone.append((group, name))
            elif rec[name] != cur[name]:
                differing.append((group, name, rec[name], cur[name]))
    return differing, unrecorded, gone


def _flag(group: str, name: str, value: Any) -> str:
    """The flag that sets `value` (bool flags only switch on: False is their default in open_lth)."""
    flag = f"--{PREFIXES.get(group, '')}{name}"
    if isinstance(value, bool):
        return flag if value else f"no {flag}"
    return f"{flag}={'none' if value is None else value}"


def mismatch_message(experiment_dir: Path, differing: list[tuple[str, str, Any, Any]], skip_groups=()) -> str:
    shown = [d for d in differing if d[0] not in skip_groups] or differing
    fields = "; ".join(f"{name or group} recorded {rec!r}, now {cur!r}" if name else f"{group} recorded {rec!r}, now {cur!r}"
                       for group, name, rec, cur in shown)
    flags = " ".join(dict.fromkeys(_flag(g, n, r) for g, n, r, _ in shown if n))
    how = f"to reproduce it, pass the recorded values explicitly ({flags}; the experiment then gets a new name); " \
        if flags else ""
    return (f"experiment {experiment_dir.name} was made with other hyperparameters than this job's (a default may "
            f"have changed since): {fields}. Nothing was run: {how}to start anew under this name, move "
            f"{experiment_dir} away")


def read_record(path: Path) -> dict:
    """hparams.json, checked: a JSON object of groups, each a table of fields (or null for an absent
    group). It cannot be recomputed (it says what the experiment was made with): a damaged one is refused."""
    recorded = io.load_json(path)
    fix = f"restore it, or move {Path(path).parent} away to start anew"
    if not isinstance(recorded, dict):
        raise io.CorruptFileError(f"cannot use {path}: not a hyperparameter record (a JSON object of groups); {fix}")
    bad = [g for g, v in recorded.items() if v is not None and not isinstance(v, dict)]
    if bad or not recorded:
        raise io.CorruptFileError(f"cannot use {path}: " + (f"group {bad[0]!r} is not a table of fields" if bad else
                                                           "it records no hyperparameters") + f"; {fix}")
    return recorded


def record_or_check(desc, experiment_dir: Path, write: bool = True,
                    warn: Optional[Callable[[str], None]] = None) -> None:
    """Write `experiment_dir/hparams.json` if the experiment is new (`write`), else check the job against
    it: HparamsMismatchError if any recorded field differs (nothing else happens then)."""
    experiment_dir = Path(experiment_dir)
    path = experiment_dir / HPARAMS_FILE
    current = _plain(desc.to_dict())
    recorded = read_record(path) if path.exists() else None
    # under torchrun every process decides on the record as it was before rank 0 writes it, so all of them
    # take the same branch and call the same collectives (save_json ends with a barrier)
    distributed.barrier()
    if recorded is None:
        if write:
            io.save_json(current, path)
        return
    differing, unrecorded, gone = compare(recorded, current)
    if differing:
        skip = tuple(PREFIXES) if getattr(desc, "rewinds_in_place", False) else ()  # same values as training's
        raise HparamsMismatchError(mismatch_message(experiment_dir, differing, skip))
    if gone and warn:
        warn(f"{path} records hyperparameter(s) this version no longer has: "
             f"{', '.join(f'{g}.{n}={recorded[g][n]!r}' for g, n in gone)}; they cannot be compared")
    if unrecorded and write:
        completed = {g: dict(v) if isinstance(v, dict) else v for g, v in recorded.items()}
        for group, name in unrecorded:
            completed[group][name] = current[group][name]
        io.save_json(completed, path)
