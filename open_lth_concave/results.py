"""Reading a run or lottery level folder back, validated: the one home for it (the runner, the branches,
`summary`, `compare`). The names of every file and folder come from foundations/layout.py; this module
stands one floor higher because it reads masks (pruning/mask.py) and loggers (training/metric_logger.py).

A level's `main/` folder holds `mask.pth`, `sparsity_report.json`, `pruning.json`, the ticket's
`model_ep*_it*.pth`, `logger`, `timing.json`, `platform.json` and (level 0) `hparams.log`. Nothing read
from it is trusted as it is: a mask must cover every prunable tensor of the model with its shape and
0/1 values (and keep pruned what the previous level pruned); the counts in `sparsity_report.json` must
be the mask's; a logger must be complete up to the run's last step; the JSON records must hold their
fields with the right types. What can be recomputed is recomputed by the runner with a one-line note
naming the file (the counts from the mask, an unfinished or damaged run by training it again); what
cannot is refused in one line naming the file and the fix. Readers that write nothing (`summary`,
`compare --report_only`) use what is sound (a mask's counts over an edited report) and otherwise refuse
with the command that recomputes the file.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

from torch import nn

from open_lth_concave.foundations import io, layout, validate
from open_lth_concave.foundations.step import Step
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.training.metric_logger import MetricLogger

RERUN = "run `open_lth lottery` again with the experiment's flags: it recomputes it"


# ---- a training run folder ---------------------------------------------------------------------------------
def model_path(output_dir: Path, step: Step) -> Path:
    """The weights a run saved at `step` (its start and end)."""
    return Path(output_dir) / layout.model_file(step)


def is_finished(output_dir: Path, end_step: Step) -> bool:
    """A run is finished when its final model exists (it is written last)."""
    return model_path(output_dir, end_step).exists()


def load_final_metrics(output_dir: Path) -> dict[str, Optional[float]]:
    logger = MetricLogger.load(Path(output_dir) / layout.LOGGER)
    return {"test_accuracy": logger.last("test_accuracy"), "test_loss": logger.last("test_loss")}


def branch_result(output_dir: Path) -> Optional[dict]:
    """A branch run's numbers read back (remaining weights of its mask, last test accuracy, its record
    branch.json); None when it has no mask yet. Damaged files give None rather than an error."""
    try:
        mask = Mask.load(output_dir / layout.MASK)
        unpruned = sum(int(v.sum().item()) for v in mask.values())
        total = sum(v.numel() for v in mask.values())
        logger = output_dir / layout.LOGGER
        accuracy = MetricLogger.load(logger).last("test_accuracy") if logger.exists() else None
        record = output_dir / layout.BRANCH_RECORD
        rec = io.load_json(record) if record.exists() else {}
    except Exception:   # noqa: BLE001 - a missing or damaged file: nothing to report
        return None
    return {"unpruned": unpruned, "total": total, "remaining": unpruned / total if total else 1.0,
            "test_accuracy": accuracy, "record": rec}


# ---- a lottery level folder ----------------------------------------------------------------------------------


def mask_shapes(model: nn.Module) -> dict[str, tuple]:
    """The prunable tensors a mask of `model` must cover, with their shapes."""
    params = dict(model.named_parameters())
    return {name: tuple(params[name].shape) for name in model.prunable_layer_names}


def read_mask(path: Path, shapes: dict[str, tuple], previous: Optional[Mask] = None) -> Mask:
    """mask.pth: every prunable tensor, its shape, only 0 and 1, and nothing alive that `previous` pruned."""
    mask = Mask.load(path)
    validate.tensors(mask, path, shapes, "mask", values="binary")
    if previous is not None:
        revived = [name for name in mask if name in previous and bool((mask[name] > previous[name]).any())]
        if revived:
            raise io.CorruptFileError(f"cannot use {path}: it keeps weights of {revived[0]} that the previous "
                                      "level pruned")
    return mask


def check_mask_against_ticket(mask: Mask, path: Path, ticket: dict) -> None:
    """A level's trained ticket has exactly its mask's zeros: a pruned weight is held at 0, and a trained live
    weight is practically never exactly 0. A mask that keeps many weights the ticket has at 0 (more than
    0.5% of what it keeps) is not the mask the ticket was trained with."""
    for name, keep in mask.items():
        weight = ticket.get(name)
        if weight is None or weight.shape != keep.shape:
            continue
        kept = int(keep.sum().item())
        zero_but_kept = int(((weight == 0) & (keep == 1)).sum().item())
        if zero_but_kept > max(10, 0.005 * kept):
            raise io.CorruptFileError(f"cannot use {path}: it keeps {zero_but_kept} weights of {name} that the "
                                      "level's trained ticket has pruned")


def counts_record(path: Path) -> dict:
    """sparsity_report.json: {"total", "unpruned"}, non-negative numbers, unpruned <= total."""
    report = validate.record(io.load_json(path), path, {"total": lambda v: validate.number(v, integer=True, minimum=0),
                                                        "unpruned": lambda v: validate.number(v, integer=True, minimum=0)},
                             "sparsity report")
    if report["unpruned"] > report["total"]:
        raise io.CorruptFileError(f"cannot use {path}: more unpruned weights than weights")
    return report


def report_matches(path: Path, mask: Mask) -> bool:
    """The sparsity report is readable and holds the mask's counts."""
    try:
        report = counts_record(path)
    except (io.CorruptFileError, io.MissingFileError, OSError):
        return False
    return report == mask.sparsity_report()


def pruning_record(path: Path, strategy: Optional[str] = None) -> dict:
    """pruning.json: {"strategy": the experiment's, "seconds": a number >= 0 or null}."""
    return validate.record(io.load_json(path), path, {
        "strategy": lambda v: isinstance(v, str) and (strategy is None or v == strategy),
        "seconds": lambda v: v is None or validate.number(v, minimum=0)}, "pruning record")


def timing_record(path: Path) -> dict:
    """timing.json of a finished run: {"seconds": >= 0, "iterations": an integer >= 0}."""
    return validate.record(io.load_json(path), path, {
        "seconds": lambda v: validate.number(v, minimum=0),
        "iterations": lambda v: validate.number(v, integer=True, minimum=0)}, "timing record")


def final_accuracy(main: Path, end_iteration: Optional[int] = None) -> Optional[float]:
    """The ticket's last test accuracy from `logger`, which must reach the run's last iteration: the one
    given, else (when timing.json says how many iterations the run had) its first evaluation plus those."""
    logger_file = main / layout.LOGGER
    if not logger_file.exists():
        return None
    logger = MetricLogger.load(logger_file)
    accuracies = logger.get("test_accuracy")
    source = ""
    if end_iteration is None and accuracies and (main / layout.TIMING).exists():
        end_iteration = min(it for it, _ in accuracies) + int(timing_record(main / layout.TIMING)["iterations"])
        source = f" that {main / layout.TIMING} gives"
    if not accuracies or (end_iteration is not None and max(it for it, _ in accuracies) != end_iteration):
        raise io.CorruptFileError(f"cannot use {logger_file}: it does not end with a test accuracy at the run's last "
                                  f"iteration{source} ({end_iteration if end_iteration is not None else '?'}); {RERUN}")
    value = max(accuracies)[1]
    if not 0 <= value <= 1:
        raise io.CorruptFileError(f"cannot use {logger_file}: a test accuracy of {value}; {RERUN}")
    return value


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def level_row(main: Path, level: int, mask: Optional[Mask] = None, end_iteration: Optional[int] = None,
              warn: Optional[Callable[[str], None]] = None) -> dict:
    """One level's numbers read back from its files: counts from the mask (when it has one; the report
    must agree, else the mask wins with a note), accuracy from a complete logger, times from the records."""
    main = Path(main)
    report_file = main / layout.SPARSITY_REPORT
    if mask is None and (main / layout.MASK).exists():
        mask = Mask.load(main / layout.MASK)
    if mask is not None:
        counts = mask.sparsity_report()
        if not report_matches(report_file, mask):
            (warn or _warn)(f"{report_file} does not hold the counts of {main / layout.MASK}; using the mask's "
                 f"({int(counts['unpruned'])}/{int(counts['total'])})")
    else:
        counts = counts_record(report_file)
    try:
        timing = timing_record(main / layout.TIMING) if (main / layout.TIMING).exists() else {}
        pruning = pruning_record(main / layout.PRUNING_RECORD) if (main / layout.PRUNING_RECORD).exists() else {}
    except io.CorruptFileError as e:
        raise io.CorruptFileError(f"{e}; {RERUN}") from None
    total, unpruned = counts["total"], counts["unpruned"]
    return {"level": level, "total": total, "unpruned": unpruned,
            "remaining": unpruned / total if total else 1.0,
            "test_accuracy": final_accuracy(main, end_iteration), "ticket_seconds": timing.get("seconds"),
            "pruning_seconds": pruning.get("seconds")}
