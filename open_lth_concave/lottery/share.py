"""Share a finished dense level 0 between lottery experiments that differ only in pruning.

Level 0 trains the dense network: it depends on the dataset, model, training (and pretraining)
hyperparameters and the replicate, never on the pruning strategy. Yet each strategy's experiment has
its own folder (the pruning group enters the hash), so comparing k strategies would train the same
dense network k times. `share_dense_level` hard-links (or copies) a finished `level_0/main` (and
`level_pretrain/main`) of the same replicate from a sibling experiment before the runner starts; the
runner then finds level 0 finished and skips it. Writes are atomic replaces, so a later rewrite of a
linked file never changes the sibling's copy.

Sharing writes into the experiment's replicate folder, so it happens only under that folder's lock
(foundations/lock.py): `LotteryRunner.run` shares right after taking its lock (so `lottery` with a
second strategy reuses the first strategy's level 0 as `compare` does), and `share_dense_level` called
from outside takes the lock itself. A process that is running (or paused in) that experiment holds the
lock, so its files are never replaced under it: the sharer waits, and then finds level 0 finished.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

from open_lth_concave import results
from open_lth_concave.foundations import io, layout
from open_lth_concave.foundations.lock import ExperimentLock
from open_lth_concave.foundations.record import read_record

SHARED_GROUPS = ("dataset_hparams", "model_hparams", "training_hparams",
                 "pretrain_dataset_hparams", "pretrain_training_hparams")
SKIPPED_FILES = (layout.CHECKPOINT, layout.HPARAMS_LOG)


def dense_key(desc_dict: dict) -> str:
    """What level 0 depends on, as comparable text (JSON round trip normalizes tuples and floats)."""
    return json.dumps({g: desc_dict.get(g) for g in SHARED_GROUPS}, sort_keys=True, default=str)


def find_dense_source(runner) -> Optional[Path]:
    """A finished level_0/main of the same replicate in another experiment with the same dense key."""
    want = dense_key(json.loads(json.dumps(runner.desc.to_dict(), default=str)))
    here = runner.replicate_dir.parent.resolve()
    pattern = f"{layout.experiment_name(layout.LOTTERY_PREFIX, '*')}/{layout.HPARAMS_RECORD}"
    for hparams_file in sorted(Path(runner.root).glob(pattern)):
        experiment = hparams_file.parent
        if experiment.resolve() == here:
            continue
        try:
            if dense_key(read_record(hparams_file)) != want:
                continue
        except (io.CorruptFileError, OSError):
            continue
        main = layout.main_dir(layout.replicate_dir(experiment, runner.replicate), 0)
        if results.is_finished(main, runner.end_step) and (main / layout.MASK).exists():
            return main
    return None


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link every file of `source` into a fresh `target` (copy where links are impossible)."""
    staging = target.with_name(f".{target.name}.sharing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for item in source.rglob("*"):
        if item.is_dir() or item.name in SKIPPED_FILES or \
                (item.name.startswith(".") and item.name != layout.CONTENT_HASHES):   # the hashes travel with the files
            continue
        dest = staging / item.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(item, dest)
        except OSError:
            shutil.copy2(item, dest)
    if target.exists():  # an unfinished run of the same dense network: the finished one replaces it
        shutil.rmtree(target)
    staging.rename(target)


def share_dense_level(runner) -> Optional[Path]:
    """Reuse a sibling's finished level 0 of the same replicate, under the lock of `runner`'s replicate
    folder (waiting for a process that holds it, as `lottery` does). Returns the source folder, or None
    when level 0 is already finished here or no sibling has it."""
    if not hasattr(runner, "end_step"):
        runner.setup()
    lock = ExperimentLock(runner.replicate_dir).acquire(
        wait=getattr(runner, "wait_for_lock", True), on_wait=lambda message: print(message, flush=True))
    try:
        return share_locked(runner)
    finally:
        lock.release()


def share_locked(runner) -> Optional[Path]:
    """`share_dense_level` for a caller that holds the replicate folder's lock (the runner)."""
    if results.is_finished(runner.main_dir(0), runner.end_step):
        return None
    source = find_dense_source(runner)
    if source is None:
        return None
    pre_source = layout.main_dir(source.parent.parent, layout.PRETRAIN_LEVEL)
    if pre_source.exists():
        _link_tree(pre_source, runner.main_dir(layout.PRETRAIN_LEVEL))
    _link_tree(source, runner.main_dir(0))
    return source
