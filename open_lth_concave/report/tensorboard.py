"""`--tensorboard`: TensorBoard event files written from what a finished job logged.

Needs the optional `tensorboard` package (`torch.utils.tensorboard` writes through it); without it the
flag is refused with one line before anything runs. Written into `<replicate or run folder>/tensorboard/`
after the job: one event run per training run (`level_L/main`, `level_L/pruning/search`,
`level_pretrain/main`, or `main` for `open_lth train`) with a scalar per logged metric and step (train
and test loss, test accuracy, and what the strategy logs, e.g. the penalty); a `levels` run with the
remaining weights (%) and ticket test accuracy per level; and, per concave search, the histogram of the
mask values as the search ended (the runs keep the final masks only, not one per epoch).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from open_lth_concave.foundations import layout
from open_lth_concave.foundations.hparams import HparamError

FOLDER = layout.TENSORBOARD


def check_available() -> None:
    if importlib.util.find_spec("tensorboard") is None:
        raise HparamError("invalid --tensorboard: the tensorboard package is not installed (pip install tensorboard); "
                          "run without the flag, or install it first")


def _runs(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob(layout.LOGGER) if FOLDER not in p.parts})


def write_events(root: Path) -> Path:
    """Event files for every logged run under `root` (a replicate folder or a train run's replicate
    folder) into `root/tensorboard`; returns that folder. Rewritten from scratch each time."""
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    from open_lth_concave.foundations import io
    from open_lth_concave.training.metric_logger import MetricLogger
    root = Path(root)
    out = root / FOLDER
    if out.exists():
        shutil.rmtree(out)
    for run in _runs(root):
        try:
            logger = MetricLogger.load(run / layout.LOGGER)
        except Exception:   # noqa: BLE001 - a damaged logger: nothing to show for that run
            continue
        writer = SummaryWriter(log_dir=str(out / run.relative_to(root)))
        try:
            for name in logger_names(logger):
                for iteration, value in logger.get(name):
                    writer.add_scalar(name, float(value), int(iteration))
            final = run / layout.STRATEGY_FINAL
            if final.exists():
                state = io.load_torch(final)
                masks = state.get("relaxed_mask") if isinstance(state, dict) else None
                if isinstance(masks, dict) and masks:
                    import torch
                    last = max((it for it, _ in logger.get("test_accuracy")), default=0)
                    writer.add_histogram("mask_values", torch.cat([v.flatten().float() for v in masks.values()]),
                                         int(last))
        finally:
            writer.close()
    _write_levels(root, out)
    return out


def logger_names(logger) -> list[str]:
    text = str(logger)
    return sorted({line.split(",", 1)[0] for line in text.splitlines() if "," in line})


def _write_levels(root: Path, out: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from open_lth_concave.report.runs import read_replicate
    try:
        rows = read_replicate(root)
    except Exception:   # noqa: BLE001 - not a lottery replicate (a train run) or damaged: no levels run
        return
    if not rows:
        return
    writer = SummaryWriter(log_dir=str(out / "levels"))
    try:
        for row in rows:
            writer.add_scalar("remaining_weights_pct", 100 * float(row["remaining"]), int(row["level"]))
            if row["test_accuracy"] is not None:
                writer.add_scalar("ticket_test_accuracy", float(row["test_accuracy"]), int(row["level"]))
    finally:
        writer.close()
