"""The comparison of pruning strategies: read their finished runs, write the table and the plot.

Outputs in the comparison folder (default `<root>/compare_<md5 of the sorted experiment names>`):
comparison.csv, comparison.md, comparison.json and comparison.png (see report/table.py). `open_lth compare`
(jobs/compare.py) runs the lotteries, then writes these; `open_lth compare --report_only DIR...` redraws
them from finished runs (experiment or replicate folders, ours or open_lth's own).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from open_lth_concave.foundations import layout
from open_lth_concave.foundations.hparams import HparamError


def comparison_dir(root: Path, experiment_names: list[str]) -> Path:
    digest = hashlib.md5(";".join(sorted(set(experiment_names))).encode("utf-8")).hexdigest()
    return Path(root) / layout.experiment_name(layout.COMPARE_PREFIX, digest)


def finished_line(replicate_dir: Path, levels: int) -> Optional[str]:
    """For a replicate whose report.json covers levels 0..`levels`: its last level in a few words
    (remaining weights, accuracy); None when anything is left to run or the report is unreadable."""
    from open_lth_concave.foundations import io
    try:
        rows = io.load_json(replicate_dir / layout.REPORT)["levels"]
        by_level = {int(row["level"]): row for row in rows}
        if any(level not in by_level for level in range(levels + 1)):
            return None
        last = by_level[levels]
        acc = "not trained" if last.get("test_accuracy") is None else f"{100 * float(last['test_accuracy']):.2f}%"
        return (f"level {levels}: remaining weights {100 * float(last['remaining']):.2f}%, ticket test "
                f"accuracy {acc} ({replicate_dir})")
    except Exception:   # noqa: BLE001 - missing or damaged: the runner decides what to redo
        return None


def write_report(experiments, out_dir: Path, extra: dict, labels: Optional[list[str]] = None) -> str:
    """Writes the comparison of `experiments` into `out_dir`, prints its table and where it went."""
    from open_lth_concave.report import table
    stats = table.compute(experiments, labels)
    markdown = table.write_all(stats, experiments, out_dir, extra)
    print(markdown)
    print(f"Comparison written to {out_dir}")
    return markdown


def report_dirs(dirs: list[str], output_dir: Optional[str]) -> None:
    """The comparison of the finished runs in `dirs` (lottery_<hash> or replicate_<N> folders), written into
    `output_dir` (default: a compare_<hash> folder next to the first experiment)."""
    from open_lth_concave.report.runs import read_experiments
    missing = [d for d in dirs if not Path(d).is_dir()]
    if missing:
        raise HparamError(f"no lottery runs in {missing[0]}: not a folder")
    experiments = read_experiments([Path(d) for d in dirs])
    out = Path(output_dir) if output_dir else comparison_dir(experiments[0].path.parent, [e.name for e in experiments])
    from open_lth_concave.foundations.io import check_writable_folder
    check_writable_folder(out, "--output_dir")
    write_report(experiments, out, {"levels": None, "source": "report_only", "dirs": [str(Path(d)) for d in dirs]})
