"""Print what a lottery run folder holds: hyperparameters, per-level numbers, the final ticket's layers.

`open_lth summary DIR` with DIR a `lottery_<hash>` experiment folder or one of its `replicate_<N>`
folders (ours, or open_lth's own). Per replicate: each level's remaining weights, ticket test accuracy
and (where recorded) the mask-search and ticket-training times; the platform and versions each run used
(its platform.json); then the per-layer sparsity of the last level's mask.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from open_lth_concave.foundations import io, layout
from open_lth_concave.foundations.hparams import HparamError
from open_lth_concave.report import names
from open_lth_concave.report.runs import Experiment, read_experiment


def hparams_text(exp: Experiment) -> str:
    """The banner's hyperparameter text (level 0's hparams.log), else the non-empty groups of hparams.json."""
    for rep in sorted(exp.replicates):
        log = layout.main_dir(layout.replicate_dir(exp.path, rep), 0) / layout.HPARAMS_LOG
        try:
            return log.read_text().rstrip()
        except (OSError, UnicodeDecodeError):  # missing or damaged (the next run writes it again): use the record
            continue
    lines = []
    for group, values in exp.hparams.items():
        if values:
            lines.append(group)
            lines += [f"    * {k} => {v}" for k, v in values.items() if v is not None and v is not False]
    return "\n".join(lines)


def _acc(value) -> str:
    return "not trained" if value is None else f"{100 * value:.2f}"


def levels_table(rows: list[dict]) -> str:
    lines = ["| Level | Remaining weights (%) | Unpruned / total | Test accuracy (%) | Search | Ticket training |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['level']} | {100 * r['remaining']:.2f} | {int(r['unpruned'])} / {int(r['total'])} | "
                     f"{_acc(r['test_accuracy'])} | {names.duration(r['pruning_seconds']) if r['level'] else '—'} | "
                     f"{names.duration(r['ticket_seconds'])} |")
    return "\n".join(lines)


def layers_table(mask_file: Path) -> str:
    from open_lth_concave.pruning.mask import Mask
    mask = Mask.load(mask_file)
    lines = ["| Tensor | Shape | Unpruned / total | Remaining (%) |", "|---|---|---:|---:|"]
    for name, value in mask.items():
        alive, total = int(value.sum().item()), value.numel()
        lines.append(f"| {name} | {'×'.join(map(str, value.shape))} | {alive} / {total} | "
                     f"{100 * alive / total if total else 100:.2f} |")
    return "\n".join(lines)


def platforms_text(replicate_dir: Path) -> str:
    """Which platform and versions each training run of the replicate used (runs with the same one share a
    line); runs without a record (made before it existed, or by open_lth) are listed as not recorded."""
    from open_lth_concave.platform import record
    runs: dict[str, list[str]] = {}
    for folder in sorted({p.parent for p in replicate_dir.rglob(layout.MODEL_GLOB)} |
                         {p.parent for p in replicate_dir.rglob(record.FILE)}, key=_run_order):
        line = record.summary(folder) or "not recorded"
        runs.setdefault(line, []).append(str(folder.relative_to(replicate_dir)))
    return "\n".join(f"- {line}: {', '.join(folders)}" for line, folders in runs.items())


def pruning_notes(strategy: str, replicate_dir: Path, levels: list[int]) -> str:
    """The registered strategy's own notes on each level's pruning artifacts (none for unknown strategies)."""
    from open_lth_concave.foundations.registry import UnknownNameError
    from open_lth_concave.pruning.strategy import registry
    try:
        cls = registry.get(strategy)
    except (UnknownNameError, ValueError):
        return ""
    lines = []
    for level in levels:
        folder = layout.level_dir(replicate_dir, level) / layout.PRUNING
        if level > 0 and folder.is_dir():
            lines += [f"- level {level}: {note}" for note in cls.level_notes(folder)]
    return "\n".join(lines)


def branches_text(replicate_dir: Path) -> str:
    """One line per branch folder of the replicate's levels: name, arguments, remaining weights, accuracy."""
    from open_lth_concave.branches.base import describe_arguments
    from open_lth_concave.results import branch_result
    lines = []
    for folder in sorted(replicate_dir.glob(f"{layout.LEVEL_GLOB}/{layout.BRANCH_PREFIX}*"), key=_run_order):
        r = branch_result(folder)
        level = layout.level_name(folder.parent)
        name = (r or {}).get("record", {}).get("branch") or folder.name[len(layout.BRANCH_PREFIX):].rsplit("_", 1)[0]
        if r is None:
            lines.append(f"- level {level}: {name}: no result yet ({folder.name})")
            continue
        args = describe_arguments(r["record"])
        acc = "not trained" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%"
        lines.append(f"- level {level}: {name}{f' ({args})' if args else ''}: remaining weights "
                     f"{100 * r['remaining']:.2f}%, test accuracy {acc} ({folder.name})")
    return "\n".join(lines)


def _run_order(folder: Path) -> tuple:
    number = next((n for n in map(layout.level_name, (folder, *folder.parents)) if n is not None), "")
    return (0 if number == layout.PRETRAIN_LEVEL else 1, int(number) if number.isdigit() else -1, str(folder))


def render(exp: Experiment) -> str:
    source = [] if exp.source == layout.HPARAMS_RECORD else \
        ["", f"(written by open_lth: hyperparameters from {exp.source}, non-default values only)"]
    parts = [f"# {exp.name}: {names.strategy_name(exp.strategy)} ({exp.strategy}), "
             f"{names.model_name(exp.model)} on {names.dataset_name(exp.dataset)}", "", "## Hyperparameters", "",
             hparams_text(exp)] + source
    for rep, rows in sorted(exp.replicates.items()):
        rep_dir = layout.replicate_dir(exp.path, rep)
        parts += ["", f"## Replicate {rep}", "", levels_table(rows)]
        notes = pruning_notes(exp.strategy, rep_dir, [r["level"] for r in rows])
        if notes:
            parts += ["", "Pruning of each level:", "", notes]
        branches = branches_text(rep_dir)
        if branches:
            parts += ["", "Branches on this trunk:", "", branches]
        platforms = platforms_text(rep_dir)
        if platforms:
            parts += ["", "Platform and versions of each run:", "", platforms]
        last = rows[-1]["level"]
        mask_file = layout.main_dir(rep_dir, last) / layout.MASK
        if mask_file.exists():
            parts += ["", f"Per-layer sparsity of the final ticket (level {last}):", "", layers_table(mask_file)]
    return "\n".join(parts) + "\n"


def render_comparison(folder: Path) -> str:
    """A `compare_` folder: its table (comparison.md) and the files beside it."""
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return (f"# {folder.name}\n\n" + (folder / layout.comparison_file("md")).read_text().rstrip() + "\n\nFiles: " +
            ", ".join(files) + "\n")


def render_training(folder: Path) -> str:
    """A `train_` folder (`open_lth train`): hyperparameters, then per replicate its final test accuracy,
    training time and platform."""
    from open_lth_concave.foundations import io
    from open_lth_concave.training.metric_logger import MetricLogger
    replicates = sorted((p for p in folder.glob(layout.REPLICATE_GLOB) if layout.replicate_number(p) is not None),
                        key=layout.replicate_number)
    logs = [r / layout.MAIN / layout.HPARAMS_LOG for r in replicates if (r / layout.MAIN / layout.HPARAMS_LOG).is_file()]
    parts = [f"# {folder.name}: dense training", "", "## Hyperparameters", "",
             logs[0].read_text().rstrip() if logs else f"(no {layout.HPARAMS_LOG})", "",
             "| Replicate | Test accuracy (%) | Last iteration | Training | Platform |", "|---:|---:|---:|---:|---|"]
    from open_lth_concave.platform import record
    for rep in replicates:
        main = rep / layout.MAIN
        accuracy, last = None, None
        try:
            logger = MetricLogger.load(main / layout.LOGGER)
            accuracy = logger.last("test_accuracy")
            last = max((it for it, _ in logger.get("test_accuracy")), default=None)
        except Exception:   # noqa: BLE001 - missing or damaged logger: shown as not trained
            pass
        timing = io.load_json(main / layout.TIMING) if (main / layout.TIMING).is_file() else {}
        parts.append(f"| {layout.replicate_number(rep)} | {_acc(accuracy)} | {last if last is not None else '—'} | "
                     f"{names.duration(timing.get('seconds'))} | {record.summary(main) or 'not recorded'} |")
    return "\n".join(parts) + "\n"


def summarize(path: Path, figures: Optional[str] = None) -> None:
    """Prints what the folder `path` holds (a comparison, a dense training, or a lottery experiment or
    replicate); `figures`: also draws the run's figures into that folder."""
    if not path.is_dir():
        raise HparamError(f"no lottery runs in {path}: not a folder")
    if (path / layout.comparison_file("md")).is_file():
        print(render_comparison(path), end="")
        if figures:   # a comparison drew its figures when it ran: they are copied, checked, into OUT
            files = [n for n in (layout.comparison_file("png"), *layout.FIGURES) if (path / n).is_file()]
            for name in files:
                io.save_bytes(io.read_checked(path / name), Path(figures) / name)
            print(f"Figures written to {figures}: {', '.join(files) or 'none (the comparison holds none)'}")
        return
    train = layout.experiment_name(layout.TRAIN_PREFIX, "")
    if path.name.startswith(train) or (layout.replicate_number(path) is not None and (path / layout.MAIN).is_dir()
                                       and path.parent.name.startswith(train)):
        print(render_training(path if path.name.startswith(train) else path.parent), end="")
        return
    exp = read_experiment(path)
    if not exp.replicates:
        raise HparamError(f"no lottery runs in {path}: no replicate has a level with {layout.SPARSITY_REPORT}")
    print(render(exp), end="")
    if figures:
        from open_lth_concave.report.figures import write_figures
        written = write_figures([exp], [exp.strategy], Path(figures))
        print(f"Figures written to {figures}: {', '.join(written) or 'none (nothing to draw)'}")
