"""Finding and reading finished lottery runs on disk (whoever made them: `lottery`, `compare` or open_lth).

An experiment is a `lottery_<hash>` folder holding `hparams.json` and `replicate_<N>` folders; a
replicate holds `level_<L>/main` folders whose numbers `level_row` reads back. Folders written by
open_lth itself have no `hparams.json`: their hyperparameters are read from the banner text that
open_lth keeps in `replicate_<N>/level_0/main/hparams.log` (groups and their non-default values), and
their numbers from the same standard files (`sparsity_report.json`, `logger`, `mask.pth`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from open_lth_concave.foundations import io, layout
from open_lth_concave.foundations.hparams import HparamError
from open_lth_concave.foundations.record import HPARAMS_FILE, read_record
from open_lth_concave.results import level_row



@dataclass
class Experiment:
    """One lottery experiment folder and the replicates of it that were read."""
    path: Path
    hparams: dict                                     # hparams.json (the job description)
    replicates: dict[int, list[dict]] = field(default_factory=dict)  # replicate -> level rows
    source: str = HPARAMS_FILE                        # where `hparams` came from (hparams.log: open_lth's folder)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def strategy(self) -> str:
        return (self.hparams.get("pruning_hparams") or {}).get("pruning_strategy", "?")

    @property
    def dataset(self) -> str:
        return (self.hparams.get("dataset_hparams") or {}).get("dataset_name", "?")

    @property
    def model(self) -> str:
        return (self.hparams.get("model_hparams") or {}).get("model_name", "?")


replicate_number = layout.replicate_number


def read_replicate(replicate_dir: Path, levels: Optional[int] = None) -> list[dict]:
    """Level rows (level_row's dict) for every level that has a mask, in level order."""
    found = []
    for level_dir in replicate_dir.glob(layout.LEVEL_GLOB):
        number = layout.level_number(level_dir)
        if number is not None and (level_dir / layout.MAIN / layout.SPARSITY_REPORT).exists():
            found.append(number)
    rows = [level_row(layout.main_dir(replicate_dir, lv), lv) for lv in sorted(found)
            if levels is None or lv <= levels]
    return rows


def read_experiment(path: Path, replicates: Optional[list[int]] = None, levels: Optional[int] = None) -> Experiment:
    """An experiment folder (or one of its replicate folders) with its replicates' rows."""
    path = Path(path)
    only = None
    if replicate_number(path) is not None:
        only = [replicate_number(path)]
        path = path.parent
    hparams_file = path / HPARAMS_FILE
    logs = sorted(path.glob(f"{layout.REPLICATE_GLOB}/{layout.main_dir('', 0).as_posix()}/{layout.HPARAMS_LOG}"))
    if hparams_file.exists():
        exp = Experiment(path, read_record(hparams_file))
    elif logs:
        try:
            text = logs[0].read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise io.CorruptFileError(f"cannot read {logs[0]}: {e}") from None
        exp = Experiment(path, parse_hparams_log(text), source=str(logs[0].relative_to(path)))
    else:
        raise HparamError(f"no lottery runs in {path}: expected a lottery_<hash> experiment folder "
                          f"(with {layout.HPARAMS_RECORD}, or open_lth's replicate_<N>/level_0/main/{layout.HPARAMS_LOG}) or one of "
                          "its replicate_<N> folders")
    wanted = only or replicates
    for rep_dir in sorted(path.glob(layout.REPLICATE_GLOB), key=lambda p: replicate_number(p) or 0):
        number = replicate_number(rep_dir)
        if number is None or (wanted is not None and number not in wanted):
            continue
        rows = read_replicate(rep_dir, levels)
        if rows:
            exp.replicates[number] = rows
    return exp


_GROUPS = (("pretrain", "dataset", "pretrain_dataset_hparams"), ("pretrain", "training", "pretrain_training_hparams"),
           ("", "dataset", "dataset_hparams"), ("", "model", "model_hparams"), ("", "pruning", "pruning_hparams"),
           ("", "training", "training_hparams"))


def _value(text: str):
    """A value as the banner shows it (Python's str()), back to a number, bool or None where it is one."""
    if text in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[text]
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_hparams_log(text: str) -> dict[str, dict]:
    """The banner's hyperparameter text (group titles, then `    * name => value` lines) as hparams.json's
    groups; only the values that differ from the defaults are in it, as open_lth writes them."""
    groups: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        item = re.fullmatch(r"\s+\*\s+(\w+)\s+=>\s?(.*)", line)
        if item and current is not None:
            current[item.group(1)] = _value(item.group(2).strip())
        elif line.strip() and not line[0].isspace():
            title = line.strip().lower()
            key = next((k for pre, word, k in _GROUPS if pre in title and word in title), None)
            current = groups.setdefault(key, {}) if key else None
    return groups


def read_experiments(paths: list[Path]) -> list[Experiment]:
    """Several folders; replicate folders of one experiment merge. A folder without runs is an error."""
    merged: dict[Path, Experiment] = {}
    for p in paths:
        exp = read_experiment(p)
        if not exp.replicates:
            raise HparamError(f"no lottery runs in {p}: no replicate has a finished level (level_<L>/main with "
                              f"{layout.SPARSITY_REPORT})")
        key = exp.path.resolve()
        if key in merged:
            merged[key].replicates.update(exp.replicates)
        else:
            merged[key] = exp
    return list(merged.values())
