#!/usr/bin/env python
"""Many small runs at once: replicate-steps per second when K replicates train together
(`training.stacked.train_stacked`, torch.func.vmap over stacked parameters) against one at a time.

    python bench/stacked_replicates.py [--device cpu|cuda] [--ks 1,4,8] [--models lenet,resnet20]
                                       [--steps 40] [--reps 3] [--threads T]

Each measurement trains K replicates of the model for `steps` steps on synthetic data of the real
shape (batch 128 each, MNIST-shaped for LeNet-300-100, CIFAR-shaped with crop+flip for ResNet-20)
with the platform defaults, and reports replicate-steps per second (K x steps / seconds). K = 1 is
the single-run baseline of the same code path, measured in the same run; the ratio column says how
much more work per second stacking gets from the same device. Repetitions are interleaved over K;
medians are reported. One warm-up call per configuration is untimed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import WORKLOADS, TimedLoader, build_model, device_name, synthetic, time_ours  # noqa: E402

from open_lth_concave.datasets.loader import BatchLoader  # noqa: E402
from open_lth_concave.foundations.hparams import TrainingHparams  # noqa: E402
from open_lth_concave.foundations.step import Step  # noqa: E402
from open_lth_concave.platform import Platform  # noqa: E402
from open_lth_concave.training.stacked import train_stacked  # noqa: E402


WARMUP = 3


def time_stacked(w, k: int, data, test, platform: Platform, steps: int) -> float:
    """Seconds per stacked step (K replicates), timed by replicate 0's loader over `steps` steps."""
    spec = w.spec
    loaders = [BatchLoader(data, spec, 128, platform.torch_device, train=True, augment=spec.augment, seed=i,
                           channels_last=platform.channels_last) for i in range(k)]
    loaders[0] = TimedLoader(loaders[0], WARMUP, steps, platform.torch_device)
    models = [build_model(w) for _ in range(k)]
    hp = TrainingHparams(optimizer_name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4, training_steps="1ep")
    train_stacked(models, loaders, test, hp, Step(WARMUP + steps + 1, loaders[0].iterations_per_epoch), platform)
    return loaders[0].seconds / steps


def time_single(w, data, test, platform: Platform, steps: int) -> float:
    """Seconds per step of one ordinary run (`loop.train`, standard strategy), for reference."""
    loader = BatchLoader(data, w.spec, 128, platform.torch_device, train=True, augment=w.spec.augment, seed=0,
                         channels_last=platform.channels_last)
    return time_ours(w, "standard", loader, test, platform, WARMUP, steps)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ks", default="1,4,8", help="numbers of replicates trained together")
    p.add_argument("--models", default="lenet", help="comma-separated: lenet, resnet20")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.ks.split(",")]
    platform = Platform(device=args.device)
    platform.apply()
    print(f"## Stacked replicates: {device_name(platform.torch_device)}\n")
    print(f"torch {torch.__version__}, {platform.summary()}, {WARMUP} warm-up + {args.steps} timed steps per "
          f"measurement (training steps only), median of {args.reps} interleaved repetitions.\n")
    print("| Model | Replicates | replicate-steps/s | vs one run |")
    print("|---|---:|---:|---:|")
    for key in args.models.split(","):
        w = next(x for x in WORKLOADS if x.key == key)
        data = synthetic(w.spec, 4096, seed=1)
        test = BatchLoader(synthetic(w.spec, 128, seed=2), w.spec, 128, platform.torch_device, train=False,
                           augment=False, seed=0, channels_last=platform.channels_last)
        configs = ["single"] + ks
        for c in configs:   # warm-up
            time_single(w, data, test, platform, 2) if c == "single" else time_stacked(w, c, data, test, platform, 2)
        seconds = {c: [] for c in configs}
        for r in range(args.reps):
            for c in configs[r % len(configs):] + configs[:r % len(configs)]:
                if c == "single":
                    seconds[c].append(time_single(w, data, test, platform, args.steps))
                else:
                    seconds[c].append(time_stacked(w, c, data, test, platform, args.steps) / c)
                print(f"[{key}] rep {r + 1} {c}: {1 / seconds[c][-1]:.1f} replicate-steps/s",
                      file=sys.stderr, flush=True)
        rate = {c: 1 / statistics.median(seconds[c]) for c in configs}
        print(f"| {w.label} | one run (`loop.train`) | {rate['single']:.1f} | 1.00x |", flush=True)
        for k in ks:
            print(f"| {w.label} | {k} stacked | {rate[k]:.1f} | {rate[k] / rate['single']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
