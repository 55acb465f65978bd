"""Does `--pruning_mode=target` hit its target with a healthy search, and are its tickets IMP's equal?

    OPEN_LTH_DATASETS=... OPEN_LTH_ROOT=... python bench/aiming.py [--preset mnist_lenet_300_100]
        [--epochs 1,2,5,10,20] [--optimizers paper,scaled] [--replicates 1] [--levels 2] [--fraction 0.2]
        [--strategy concave_log] [--threads 1] [--flag=--precision=fp32 ...]

For each round length, each mask optimizer and each replicate: one concave lottery in target mode and, with
the same training hyperparameters, IMP at the same fraction per level (sharing the dense level 0). One row per
cell and level: the share of the survivors removed, the share that was below alpha on the masks' own, what
decided (own choice / capped / topped up / fallback), the search network's final test accuracy, the ticket's,
and IMP's ticket at the same level. Finished lotteries are reused: rerun to resume or to print again.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from open_lth_concave import cli, jobs, plugins


def run(argv: list[str]) -> Path:
    rep = Path(jobs.build("lottery", argv).runner.replicate_dir)
    if not (rep / "report.json").exists():
        code = cli.main(["lottery", *argv])
        if code != 0:
            raise SystemExit(f"open_lth lottery {' '.join(argv)} failed with exit code {code}")
    return rep


def level_rows(rep: Path) -> list[dict]:
    return json.loads((rep / "report.json").read_text())["levels"]


def search(rep: Path, level: int) -> dict:
    return json.loads((rep / f"level_{level}" / "pruning" / "search_metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist_lenet_300_100")
    parser.add_argument("--epochs", default="1,2,5,10,20", help="round lengths; 'preset': the preset's own")
    parser.add_argument("--optimizers", default="paper,scaled", help="--mask_optimizer values (auto: the default)")
    parser.add_argument("--replicates", default="1")
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--strategy", default="concave_log")
    parser.add_argument("--mode", default="target", help="the concave strategy's --pruning_mode (auto: the default)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--flag", action="append", default=[], help="one more lottery flag for every run")
    args = parser.parse_args()
    plugins.load_plugins()
    print(f"{args.preset}, {args.strategy} --pruning_mode={args.mode}, fraction {args.fraction}, levels "
          f"{args.levels}, replicates {args.replicates}, extra flags {args.flag or 'none'}")
    print("| epochs/round | mask optimizer | replicate | level | removed % | below alpha on their own % | "
          "decided by | search test acc % | ticket acc % | IMP ticket acc % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    gaps: list[float] = []
    for epochs in args.epochs.split(","):
        for optimizer in args.optimizers.split(","):
            for replicate in args.replicates.split(","):
                length = [] if epochs == "preset" else [f"--training_steps={epochs}ep"]
                common = [f"--default_hparams={args.preset}", *length, f"--levels={args.levels}",
                          f"--replicate={replicate}", f"--threads={args.threads}", "--quiet", *args.flag]
                imp = run([*common, "--pruning_strategy=sparse_global", f"--pruning_fraction={args.fraction}"])
                concave_flags = [f"--pruning_strategy={args.strategy}"]
                concave_flags += [f"--pruning_mode={args.mode}"] if args.mode != "auto" else []
                concave_flags += [f"--mask_optimizer={optimizer}"] if optimizer != "auto" else []
                if args.mode != "threshold":
                    concave_flags.append(f"--pruning_fraction={args.fraction}")
                rep = run([*common, *concave_flags])
                ours, theirs = level_rows(rep), level_rows(imp)
                for level in range(1, args.levels + 1):
                    m = search(rep, level)
                    before = sum(r["before"] for n, r in m["layers"].items() if n not in set(m["ignored_layers"]))
                    acc, imp_acc = 100 * ours[level]["test_accuracy"], 100 * theirs[level]["test_accuracy"]
                    gaps.append(acc - imp_acc)
                    print(f"| {epochs} | {optimizer} | {replicate} | {level} | {100 * m['removed'] / before:.1f} | "
                          f"{100 * m['share_below_threshold']:.1f} | "
                          f"{m['pruning_mode'] + ': ' if 'auto' in m else ''}{m.get('target_outcome', m['pruning_mode'])} | "
                          f"{100 * m['test_accuracy']:.2f} | {acc:.2f} | {imp_acc:.2f} |", flush=True)
    if gaps:
        print(f"ticket - IMP: mean {statistics.mean(gaps):+.2f}, min {min(gaps):+.2f}, max {max(gaps):+.2f} points "
              f"over {len(gaps)} levels")


if __name__ == "__main__":
    main()
