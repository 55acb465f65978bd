"""The paper's claim as one table: IMP, concave l1/log, and IMP matched to the concave sparsity, with
random-pruning and reinitialization branches at the last level, mean +- std over replicates.

    OPEN_LTH_DATASETS=... OPEN_LTH_ROOT=... python bench/fidelity.py --preset paper_mnist10k_lenet \\
        --replicates 1,2,3 [--matched_fraction 0.8055] [--model_name cifar_resnet_20_8] [--threads 1] \\
        [--flag=--training_steps=2it ...] [--concave_flag=--pruning_mode=target ...] [--report_only]

Every run is `open_lth lottery --default_hparams=PRESET` with identical training hyperparameters (only
the pruning flags differ), so finished runs are reused and interrupted ones resume: rerun the same
command. Level 0 is trained once per replicate (by IMP) and shared with the other strategies, as
`open_lth compare` does. The IMP run matched to the concave method removes, per level, the fraction
1 - r^(1/levels) where r is concave_log's mean remaining share after the last level (or
--matched_fraction). Remaining = unpruned / all weights (as report.json); accuracy = the ticket's
final test accuracy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Optional

from open_lth_concave import cli, jobs, plugins
from open_lth_concave.lottery.share import share_dense_level
from open_lth_concave.training.metric_logger import MetricLogger

CONCAVE = ["concave_log", "concave_l1"]
BRANCHES = ["randomly_prune", "randomly_reinitialize"]


def lottery_argv(args, replicate: int, strategy_flags: list[str]) -> list[str]:
    argv = [f"--default_hparams={args.preset}", f"--levels={args.levels}", f"--replicate={replicate}", "--quiet",
            *strategy_flags, *args.flag]
    if args.model_name:
        argv.append(f"--model_name={args.model_name}")
    if args.threads:
        argv.append(f"--threads={args.threads}")
    return argv


def cli_run(argv: list[str]) -> None:
    """Run one `open_lth` command in this process (no interpreter start-up per run)."""
    code = cli.main(argv)
    if code != 0:
        raise SystemExit(f"open_lth {' '.join(argv)} failed with exit code {code}")


def location(argv: list[str]) -> Path:
    """The replicate folder of a lottery, from its hyperparameters (nothing runs)."""
    runner = jobs.build("lottery", argv).runner
    return Path(runner.replicate_dir)


def run_lottery(args, replicate: int, strategy_flags: list[str]) -> Path:
    argv = lottery_argv(args, replicate, strategy_flags)
    rep = location(argv)
    if not args.report_only and not (rep / "report.json").exists():
        runner = jobs.build("lottery", argv).runner
        share_dense_level(runner)               # the dense level 0 of a sibling strategy, if finished
        cli_run(["lottery", *argv])
    return rep


def run_branch(args, replicate: int, strategy_flags: list[str], branch: str) -> Optional[float]:
    """The branch's final test accuracy at the last level of the trunk (None when not run)."""
    trunk = lottery_argv(args, replicate, strategy_flags)      # its --levels is also the level branched from
    argv = ["lottery_branch", branch, *trunk] + ([f"--seed={replicate}"] if branch == "randomly_prune" else [])
    pattern = f"lottery_branch_{branch}_*/logger"
    found = sorted((location(trunk) / f"level_{args.levels}").glob(pattern))
    if not args.report_only and not found:
        cli_run(argv)
        found = sorted((location(trunk) / f"level_{args.levels}").glob(pattern))
    return MetricLogger.load(found[-1]).last("test_accuracy") if found else None


def levels_of(rep: Path) -> Optional[list[dict]]:
    report = rep / "report.json"
    return json.loads(report.read_text())["levels"] if report.exists() else None


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper_mnist10k_lenet")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--replicates", default="1,2,3")
    parser.add_argument("--model_name", default=None, help="e.g. a narrower ResNet-20 (cifar_resnet_20_8)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--matched_fraction", type=float, default=None)
    parser.add_argument("--flag", action="append", default=[], help="one more lottery flag for every run")
    parser.add_argument("--concave_flag", action="append", default=[], help="one more flag for the concave runs")
    parser.add_argument("--report_only", action="store_true", help="run nothing; print what is finished")
    args = parser.parse_args()
    plugins.load_plugins()
    replicates = [int(r) for r in args.replicates.split(",")]

    table: dict[str, list[Optional[list[dict]]]] = {}
    for name, flags in [("sparse_global (IMP, 20%)", ["--pruning_strategy=sparse_global"])] + \
            [(c, [f"--pruning_strategy={c}", *args.concave_flag]) for c in CONCAVE]:
        table[name] = [levels_of(run_lottery(args, r, flags)) for r in replicates]
    fraction = args.matched_fraction
    if fraction is None:
        finals = [lv[-1]["remaining"] for lv in table["concave_log"] if lv]
        fraction = round(1 - statistics.mean(finals) ** (1 / args.levels), 4) if finals else None
        if fraction is not None and not 0 < fraction < 1:
            print(f"concave_log removed nothing to match (remaining {finals}); no matched IMP run", file=sys.stderr)
            fraction = None
    matched_flags = ["--pruning_strategy=sparse_global", f"--pruning_fraction={fraction}"]
    if fraction is not None:
        table[f"IMP matched ({fraction} per level)"] = [levels_of(run_lottery(args, r, matched_flags)) for r in replicates]
    branch_rows = {}
    for name, flags in (("concave_log", ["--pruning_strategy=concave_log", *args.concave_flag]),
                        ("IMP matched", matched_flags)):
        if name == "IMP matched" and fraction is None:
            continue
        for branch in BRANCHES:
            accs = [run_branch(args, r, flags, branch) for r in replicates]
            branch_rows[f"{name}: {branch}"] = [100 * a for a in accs if a is not None]

    print(f"{args.preset}{' / ' + args.model_name if args.model_name else ''}, replicates {args.replicates}, "
          f"extra flags {args.flag or 'none'}, concave flags {args.concave_flag or 'none'}: "
          "remaining % / ticket test accuracy %, mean ± std")
    print("| level | " + " | ".join(table) + " |")
    print("|---|" + "---|" * len(table))
    for level in range(args.levels + 1):
        cells = []
        for reports in table.values():
            rows = [lv[level] for lv in reports if lv and len(lv) > level]
            remaining = mean_std([100 * row["remaining"] for row in rows])
            accuracy = mean_std([100 * row["test_accuracy"] for row in rows if row["test_accuracy"] is not None])
            cells.append(f"{remaining} / {accuracy} (n={len(rows)})")
        print(f"| {level} | " + " | ".join(cells) + " |")
    for name, accs in branch_rows.items():
        print(f"level {args.levels} branch {name}: accuracy {mean_std(accs)} % (n={len(accs)})")


if __name__ == "__main__":
    main()
