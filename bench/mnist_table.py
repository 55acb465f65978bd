"""Level / remaining weights / ticket test accuracy for IMP and the concave strategies on MNIST-10k.

    OPEN_LTH_DATASETS=/tmp/ds OPEN_LTH_ROOT=/tmp/mnist_table python bench/mnist_table.py \
        [--training_steps 10ep] [--replicates 1,2,3] [--levels 3] \
        [--strategies sparse_global,concave_l1,concave_log] [--extra "concave_log=--threshold=0.3"]

Every strategy runs `open_lth lottery --default_hparams=mnist_lenet_300_100` with identical training
hyperparameters (only --pruning_strategy and its own flags differ); finished runs are reused. Prints a
markdown table of mean +- std over replicates (remaining = unpruned / all weights, as report.json).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def run(strategy: str, replicate: int, args, extra: list[str]) -> Path:
    base = [sys.executable, "-m", "open_lth_concave", "lottery", "--default_hparams=mnist_lenet_300_100",
            f"--levels={args.levels}", f"--training_steps={args.training_steps}", f"--replicate={replicate}",
            f"--pruning_strategy={strategy}", "--evaluate_only_at_end", "--quiet", *extra]
    location = subprocess.run(base + ["--display_output_location"], capture_output=True, text=True, check=True)
    rep = Path(location.stdout.strip().splitlines()[-1])
    if not (rep / "report.json").exists():
        subprocess.run(base, check=True)
    return rep


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training_steps", default="10ep")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--replicates", default="1,2,3")
    parser.add_argument("--strategies", default="sparse_global,concave_l1,concave_log")
    parser.add_argument("--extra", action="append", default=[], help="STRATEGY=--flag=value (repeatable)")
    args = parser.parse_args()
    extra: dict[str, list[str]] = {}
    for item in args.extra:
        strategy, flag = item.split("=", 1)
        extra.setdefault(strategy, []).append(flag)
    replicates = [int(r) for r in args.replicates.split(",")]
    table: dict[str, list[list[dict]]] = {}
    for strategy in args.strategies.split(","):
        table[strategy] = [json.loads((run(strategy, r, args, extra.get(strategy, [])) / "report.json").read_text())["levels"]
                           for r in replicates]
    print(f"MNIST-10k, LeNet-300-100, {args.training_steps} per training, replicates {args.replicates}, "
          f"root {os.environ.get('OPEN_LTH_ROOT', '~/open_lth_data')}; extra flags: {extra or 'none'}")
    print("| level | " + " | ".join(f"{s} remaining % | {s} accuracy %" for s in table) + " |")
    print("|---|" + "---|---|" * len(table))
    for level in range(args.levels + 1):
        cells = []
        for reports in table.values():
            rows = [r[level] for r in reports]
            cells.append(mean_std([100 * row["remaining"] for row in rows]))
            cells.append(mean_std([100 * row["test_accuracy"] for row in rows if row["test_accuracy"] is not None]))
        print(f"| {level} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
