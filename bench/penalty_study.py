"""What the concave penalty itself contributes, at the paper's length (MNIST-10k, LeNet-300-100, level 1).

    OPEN_LTH_DATASETS=... OPEN_LTH_ROOT=... python bench/penalty_study.py [--replicates 1,2,3] [--run]
        [--threads 1] [--flag=--precision=fp32 ...]

Four level-1 variants per replicate, all from the same dense level 0 (shared) and the paper's recipe
(`--default_hparams=paper_mnist10k_lenet --levels=1`):

- default: `concave_log` with its defaults (at this length: threshold mode, the paper's mask optimizer);
- lambda = 0: `--regularization_lambda=0`, pruning exactly the default's count by mask value (the same as
  re-choosing alpha so that it prunes that count);
- no mask decay: `--mask_weight_decay=0` with the paper's threshold rule;
- one-shot magnitude: IMP's level 1 (`sparse_global`) removing the default's count from the trained dense
  network.

Printed: each variant's remaining share and ticket accuracy per replicate (mean +- std), the overlap of
the pruned sets with the default's (Jaccard), the share of surviving masks below alpha for a sweep of alpha
on the default's relaxed masks (before pruning, from the finished search), and the block model's
prediction beside the measured block. `--run` runs what is missing (the default first); without it only
finished runs are read.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Optional

import torch

from open_lth_concave import cli, jobs, plugins
from open_lth_concave.concave.regularizers import MaskPenalty
from open_lth_concave.concave.search import unheld_mask_end
from open_lth_concave.foundations import io, layout

ALPHAS = (0.02, 0.03, 0.033, 0.035, 0.04, 0.05, 0.07, 0.1)


def replicate_dir(argv: list[str]) -> Path:
    return Path(jobs.build("lottery", argv).runner.replicate_dir)


def finished(rep: Path) -> bool:
    return (rep / layout.REPORT).exists()


def ensure(argv: list[str], run: bool) -> Optional[Path]:
    rep = replicate_dir(argv)
    if not finished(rep) and run:
        code = cli.main(["lottery", *argv])
        if code != 0:
            raise SystemExit(f"open_lth lottery {' '.join(argv)} failed with exit code {code}")
    return rep if finished(rep) else None


def level_1(rep: Path) -> dict:
    return json.loads((rep / layout.REPORT).read_text())["levels"][1]


def pruned_set(rep: Path) -> torch.Tensor:
    mask = io.load_torch(rep / "level_1" / "main" / "mask.pth")
    return torch.cat([(mask[k] == 0).flatten() for k in sorted(mask)])


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(1, float((a | b).sum()))


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", default="1,2,3")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run", action="store_true", help="run the missing lotteries (else only read)")
    parser.add_argument("--flag", action="append", default=[], help="one more lottery flag for every run")
    args = parser.parse_args()
    plugins.load_plugins()
    common = ["--default_hparams=paper_mnist10k_lenet", "--levels=1", f"--threads={args.threads}", "--quiet", *args.flag]
    rows: dict[str, list[tuple[float, float]]] = {}
    overlaps: dict[str, list[float]] = {}
    sweeps: list[list[float]] = []
    blocks: list[tuple[float, float]] = []
    for r in args.replicates.split(","):
        base = [*common, f"--replicate={r}"]
        default = ensure([*base, "--pruning_strategy=concave_log"], args.run)
        if default is None:
            print(f"replicate {r}: the default concave_log run is not finished")
            continue
        metrics = io.load_json(default / "level_1" / "pruning" / "search_metrics.json")
        prunable = sum(v["before"] for k, v in metrics["layers"].items() if k not in metrics["ignored_layers"])
        fraction = f"{(metrics['removed'] - 0.5) / prunable:.10f}"      # ceil(fraction x prunable) = removed
        variants = {"default": default,
                    "lambda = 0 (count matched)": ensure([*base, "--pruning_strategy=concave_log",
                                                          "--regularization_lambda=0", "--pruning_mode=fraction",
                                                          f"--pruning_fraction={fraction}"], args.run),
                    "no mask decay (threshold)": ensure([*base, "--pruning_strategy=concave_log",
                                                         "--mask_weight_decay=0", "--pruning_mode=threshold"], args.run),
                    "one-shot magnitude (count matched)": ensure([*base, "--pruning_strategy=sparse_global",
                                                                  f"--pruning_fraction={fraction}"], args.run)}
        reference = pruned_set(default)
        for name, rep in variants.items():
            if rep is None:
                continue
            row = level_1(rep)
            rows.setdefault(name, []).append((100 * row["remaining"], 100 * row["test_accuracy"]))
            if name != "default":
                overlaps.setdefault(name, []).append(jaccard(reference, pruned_set(rep)))
        final = io.load_torch(default / "level_1" / "pruning" / layout.SEARCH / layout.STRATEGY_FINAL)["relaxed_mask"]
        values = torch.cat([final[k].flatten() for k in sorted(final)])
        sweeps.append([100 * float((values < a).float().mean()) for a in ALPHAS])
        # the block model (search.unheld_mask_end) from the recorded budget, beside the measured block
        penalty = MaskPenalty.resolve("log", metrics["regularization_lambda"])
        travel, decay = metrics["lr_sum_over_1_minus_momentum"], metrics["mask_optimizer"]["weight_decay"]
        top = 2 * 0.5 * math.exp(-decay * travel)
        block = values[(values > 0) & (values <= top)]
        blocks.append((unheld_mask_end(0.5, decay, penalty.lam, penalty.regularizer.derivative, travel),
                       float(block.median()) if block.numel() else float("nan")))
    print(f"MNIST-10k, LeNet-300-100, paper recipe, level 1, replicates {args.replicates}, extra flags "
          f"{args.flag or 'none'}: remaining % of all weights / ticket test accuracy %, mean ± std")
    print("| variant | remaining % | ticket % | per replicate | Jaccard of the pruned set with the default's |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        per = ", ".join(f"{a:.2f}" for _, a in values)
        jac = mean_std([100 * j for j in overlaps.get(name, [])]).replace(" ± ", "% ± ") + "%" \
            if name in overlaps else "-"
        print(f"| {name} | {mean_std([v for v, _ in values])} | {mean_std([a for _, a in values])} | {per} | {jac} |")
    if sweeps:
        print("share of the surviving masks below alpha (default run's relaxed masks, before pruning), %:")
        print("| alpha | " + " | ".join(f"{a:g}" for a in ALPHAS) + " |")
        print("|---|" + "---|" * len(ALPHAS))
        for r, sweep in zip(args.replicates.split(","), sweeps):
            print(f"| replicate {r} | " + " | ".join(f"{s:.2f}" for s in sweep) + " |")
    for r, (predicted, measured) in zip(args.replicates.split(","), blocks):
        print(f"replicate {r}: block model {predicted:.4f}, measured median of the block {measured:.4f}")


if __name__ == "__main__":
    main()
