"""The comparison table: per strategy and level, remaining weights and ticket test accuracy over replicates.

Statistics: means over the replicates that reached a level; the standard deviation is the sample one
(ddof = 1), 0 for a single replicate. "Diff" is a strategy's mean accuracy at a level minus its own mean
dense (level 0) accuracy, in percentage points (Table II's "Acc. Diff."). Times: "search" is a level's
mask search (pruning.json), "ticket" its ticket training (timing.json); the time to find the final
sparse network (Table III) sums the searches of levels 1..N plus, for strategies that prune from
trained tickets (IMP), the training of the tickets of levels 0..N-1 that the searches consumed.
"""
from __future__ import annotations

import csv
import io as _io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from open_lth_concave.foundations import io, layout
from open_lth_concave.report import names
from open_lth_concave.report.runs import Experiment

CSV_COLUMNS = ("strategy", "level", "replicates", "remaining_pct", "remaining_std_pct", "accuracy_mean_pct",
               "accuracy_std_pct", "diff_from_dense_pct", "search_seconds_mean", "ticket_seconds_mean")


def mean(values: list[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def sample_std(values: list[float]) -> Optional[float]:
    if not values:
        return None
    if len(values) == 1:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


@dataclass
class StrategyStats:
    label: str
    experiment: Experiment
    needs_trained_model: bool
    levels: list[dict] = field(default_factory=list)
    find_seconds: Optional[float] = None
    final_ticket_seconds: Optional[float] = None
    platforms: list[str] = field(default_factory=list)   # where its timed runs ran (device, precision, threads)


def timed_platforms(exp: Experiment) -> list[str]:
    """The platforms (device, precision, memory layout, threads; versions left out) of every run whose
    time the tables report: each level's ticket training and mask search; 'not recorded' for runs
    without platform.json (older ones, open_lth's)."""
    from open_lth_concave.platform import record
    found: list[str] = []
    for rep in sorted(exp.replicates):
        rep_dir = layout.replicate_dir(exp.path, rep)
        for row in exp.replicates[rep]:
            level_dir = layout.level_dir(rep_dir, row["level"])
            for run in (level_dir / layout.MAIN, level_dir / layout.PRUNING / layout.SEARCH):
                if not (run / layout.TIMING).exists():
                    continue
                line = record.summary(run)
                line = "not recorded" if line is None else line.split("; torch")[0]
                if line not in found:
                    found.append(line)
    return found


def _flat(hparams: dict) -> dict[str, object]:
    return {f"{g}.{k}": v for g, d in hparams.items() if isinstance(d, dict) for k, v in d.items()}


def labels_for(experiments: list[Experiment]) -> list[str]:
    """The strategy name, plus the hyperparameters that tell apart experiments sharing that name."""
    labels = []
    for exp in experiments:
        same = [e for e in experiments if e.strategy == exp.strategy]
        if len(same) == 1:
            labels.append(exp.strategy)
            continue
        flats = [_flat(e.hparams) for e in same]
        mine = _flat(exp.hparams)
        differing = sorted(k for k in set().union(*flats) if len({json.dumps(f.get(k), default=str) for f in flats}) > 1)
        shown = ", ".join(f"{k.split('.', 1)[1]}={mine.get(k)}" for k in differing) or exp.name
        labels.append(f"{exp.strategy} ({shown})")
    return labels


def _needs_trained_model(strategy: str) -> bool:
    cls = names.strategy_class(strategy)
    return True if cls is None else bool(cls.needs_trained_model)


def _find_and_train(rows: list[dict], needs_trained: bool) -> tuple[Optional[float], Optional[float]]:
    """(time to find the last level's mask, training time of the last level's ticket) for one replicate."""
    if not rows:
        return None, None
    by_level = {r["level"]: r for r in rows}
    last = max(by_level)
    find = 0.0
    for level in range(1, last + 1):
        row = by_level.get(level)
        find += (row or {}).get("pruning_seconds") or 0.0
        if needs_trained:
            find += (by_level.get(level - 1) or {}).get("ticket_seconds") or 0.0
    return find, by_level[last].get("ticket_seconds")


def compute(experiments: list[Experiment], labels: Optional[list[str]] = None) -> list[StrategyStats]:
    labels = labels or labels_for(experiments)
    out = []
    for exp, label in zip(experiments, labels):
        stats = StrategyStats(label, exp, _needs_trained_model(exp.strategy))
        all_levels = sorted({r["level"] for rows in exp.replicates.values() for r in rows})
        dense = None
        for level in all_levels:
            rows = [r for reps in exp.replicates.values() for r in reps if r["level"] == level]
            remaining = [100 * r["remaining"] for r in rows]
            acc = [100 * r["test_accuracy"] for r in rows if r["test_accuracy"] is not None]
            acc_mean = mean(acc)
            if level == 0:
                dense = acc_mean
            stats.levels.append({
                "level": level, "replicates": len(rows),
                "remaining_pct": mean(remaining), "remaining_std_pct": sample_std(remaining),
                "accuracy_mean_pct": acc_mean, "accuracy_std_pct": sample_std(acc),
                "diff_from_dense_pct": None if acc_mean is None or dense is None else acc_mean - dense,
                "search_seconds_mean": mean([r["pruning_seconds"] for r in rows if r.get("pruning_seconds") is not None]),
                "ticket_seconds_mean": mean([r["ticket_seconds"] for r in rows if r.get("ticket_seconds") is not None]),
            })
        pairs = [_find_and_train(rows, stats.needs_trained_model) for rows in exp.replicates.values()]
        stats.find_seconds = mean([f for f, _ in pairs if f is not None])
        stats.final_ticket_seconds = mean([t for _, t in pairs if t is not None])
        stats.platforms = timed_platforms(exp)
        out.append(stats)
    return out


# ---- writers -----------------------------------------------------------------------------------------
def _num(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.6f}"


def to_csv(stats: list[StrategyStats]) -> str:
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in stats:
        for row in s.levels:
            writer.writerow([s.label, row["level"], row["replicates"]] +
                            [_num(row[c]) for c in CSV_COLUMNS[3:]])
    return buffer.getvalue()


def test_examples(exp: Experiment) -> Optional[int]:
    """How many test images level 0 was evaluated on (its logger's test_examples), None when not recorded."""
    from open_lth_concave.training.metric_logger import MetricLogger
    for rep in sorted(exp.replicates):
        logger = layout.main_dir(layout.replicate_dir(exp.path, rep), 0) / layout.LOGGER
        try:
            n = MetricLogger.load(logger).last("test_examples")
        except Exception:   # noqa: BLE001 - missing or damaged: not recorded
            continue
        if n:
            return int(n)
    return None


def schedule(exp: Experiment) -> str:
    """`2ep per round, rewind to init` (or `rewind to 1ep`, `pretrained on ...`)."""
    training = exp.hparams.get("training_hparams") or {}
    pre_training = exp.hparams.get("pretrain_training_hparams") or {}
    pre_dataset = exp.hparams.get("pretrain_dataset_hparams") or {}
    steps = training.get("training_steps", "?")
    if not pre_training or not pre_training.get("training_steps"):
        point = "rewind to init"
    elif not pre_dataset or pre_dataset == exp.hparams.get("dataset_hparams"):
        point = f"rewind to {pre_training['training_steps']}"
    else:
        point = f"pretrained {pre_training['training_steps']} on {names.dataset_name(pre_dataset.get('dataset_name', '?'))}"
    return f"{steps} per round, {point}"


def title(experiments: list[Experiment]) -> str:
    """Model, dataset with its test-set size (MNIST-10k is not MNIST), epochs per round and rewind point."""
    counts = sorted({n for n in (test_examples(e) for e in experiments) if n})
    datasets = sorted({names.dataset_name(e.dataset) for e in experiments})
    models = sorted({names.model_name(e.model) for e in experiments})
    size = f", {' / '.join(f'{n:,}' for n in counts)} test images" if counts else ""
    schedules = sorted({schedule(e) for e in experiments})
    return f"{' / '.join(models)} on {' / '.join(datasets)}{size}; {' / '.join(schedules)}"


def _pm(m: Optional[float], s: Optional[float], n: int = 2) -> str:
    """`mean ± std`; one replicate has no spread to show, so just the mean."""
    if m is None:
        return "—"
    return f"{m:.2f}" if n < 2 or s is None else f"{m:.2f} ± {s:.2f}"


def to_markdown(stats: list[StrategyStats], heading: str) -> str:
    lines = [f"## {heading}", "",
             "Ticket test accuracy, mean ± sample std over replicates; Δ = difference from the strategy's "
             "dense (level 0) accuracy in percentage points.", "",
             "| Strategy | Level | Remaining weights (%) | Test accuracy (%) | Δ vs dense (pp) | Replicates |",
             "|---|---:|---:|---:|---:|---:|"]
    for s in stats:
        for row in s.levels:
            rem = f"{row['remaining_pct']:.2f}"
            if row["remaining_std_pct"] and round(row["remaining_std_pct"], 2) > 0:
                rem += f" ± {row['remaining_std_pct']:.2f}"
            diff = "—" if row["diff_from_dense_pct"] is None else f"{row['diff_from_dense_pct']:+.2f}"
            lines.append(f"| {names.strategy_name(s.label)} | {row['level']} | {rem} | "
                         f"{_pm(row['accuracy_mean_pct'], row['accuracy_std_pct'], row['replicates'])} | {diff} | "
                         f"{row['replicates']} |")
    lines += ["", "| Strategy | Time to find the sparse network | Training time of the sparse network | Platform |",
              "|---|---:|---:|---|"]
    everywhere = sorted({p for s in stats for p in s.platforms})
    for s in stats:
        mark = " †" if len(everywhere) > 1 else ""
        lines.append(f"| {names.strategy_name(s.label)}{mark} | {names.duration(s.find_seconds)} | "
                     f"{names.duration(s.final_ticket_seconds)} | {' + '.join(s.platforms) or '—'} |")
    if len(everywhere) > 1:
        lines += ["", f"† Not comparable: these times come from {len(everywhere)} different platforms "
                  f"({'; '.join(everywhere)}); a thread count or precision alone can change a time many-fold."]
    return "\n".join(lines) + "\n"


def to_json(stats: list[StrategyStats], heading: str, extra: dict) -> dict:
    return {
        "title": heading, **extra,
        "strategies": [{
            "label": s.label, "strategy": s.experiment.strategy, "experiment": s.experiment.name,
            "path": str(s.experiment.path), "dataset": s.experiment.dataset, "model": s.experiment.model,
            "replicates": sorted(s.experiment.replicates), "needs_trained_model": s.needs_trained_model,
            "find_seconds_mean": s.find_seconds, "final_ticket_seconds_mean": s.final_ticket_seconds,
            "platforms": s.platforms,
            "levels": s.levels,
            "per_replicate": {str(k): v for k, v in sorted(s.experiment.replicates.items())},
        } for s in stats],
    }


def write_all(stats: list[StrategyStats], experiments: list[Experiment], out_dir: Path, extra: dict) -> str:
    """comparison.csv/.md/.json/.png in out_dir; returns the Markdown text."""
    from open_lth_concave.report.plot import plot_comparison
    heading = title(experiments)
    markdown = to_markdown(stats, heading)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = layout.comparison_file("png")
    io.save_text(to_csv(stats), out_dir / layout.comparison_file("csv"))
    io.save_text(markdown + f"\n![Test accuracy vs remaining weights]({png})\n", out_dir / layout.comparison_file("md"))
    io.save_json(to_json(stats, heading, extra), out_dir / layout.comparison_file("json"))
    counts = [n for n in (test_examples(e) for e in experiments) if n]
    plot_comparison(stats, heading, out_dir / png, test_images=min(counts) if counts else None)
    from open_lth_concave.report.figures import write_figures
    write_figures(experiments, [s.label for s in stats], out_dir)
    return markdown
