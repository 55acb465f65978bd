#!/usr/bin/env python
"""Training-speed benchmark: our device-resident training path against a conventional PyTorch one.

    python bench/speed.py [--device cpu|cuda] [--quick] [--steps N] [--reps R] [--threads T]
                          [--workers 0,2] [--json FILE]

Rows: LeNet-300-100 on MNIST-shaped data and ResNet-20 on CIFAR-shaped data (synthetic uint8 images,
batch 128; CIFAR with 4-pixel pad + random crop + random flip), each with the `standard` and the
`soft_mask` training strategy.

"Ours" is the real training path: `open_lth_concave.training.loop.train` itself, run on a short
TrainJob (evaluation only at the start and the end, on a 128-example test set, outside the timed
window), fed by `datasets.loader.BatchLoader` holding the uint8 data on the device. The train loader
is wrapped so that the clock reads at the moment the loop asks for batch `warmup` and again for batch
`warmup + steps`: the window is exactly `steps` full iterations of the loop (batch production, lr
update, forward, loss + penalty, backward, SGD step, the strategy's after-step hook, bookkeeping).

"Reference" is the conventional style, measured in the same process and interleaved with ours: a
`torch.utils.data.Dataset` returning one sample at a time with per-sample transforms written with
plain torch ops (what torchvision's RandomCrop(padding=4) / RandomHorizontalFlip / ToTensor /
Normalize do), a `torch.utils.data.DataLoader` (shuffle, batch 128; num_workers 0 and 2 in the default
run), fp32, no compilation, and a plain training loop over the same nn.Module architecture with
torch.optim.SGD and a per-iteration LambdaLR. The soft-mask reference puts one mask nn.Parameter on
each prunable layer with torch.nn.utils.parametrize (weight * mask recomputed in every forward), sums
the log penalty with a Python loop over the masks, and clamps each mask to [0, 1] in a Python loop.

Every configuration runs once untimed (warm-up), then `reps` timed repetitions whose order rotates
so machine noise hits ours and the reference alike; the table reports medians. Nothing here imports
torchvision. Progress goes to stderr, the Markdown report to stdout.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform as pyplatform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, Dataset

import open_lth_concave.datasets  # noqa: F401  (registers the dataset specs)
from open_lth_concave.datasets.base import DatasetSpec, ImageData
from open_lth_concave.datasets.base import registry as dataset_specs
from open_lth_concave.datasets.loader import PAD, BatchLoader
from open_lth_concave.foundations.hparams import ModelHparams, TrainingHparams
from open_lth_concave.foundations.step import Step
from open_lth_concave.models import get_model
from open_lth_concave.platform import Platform, allocator
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.training import loop
from open_lth_concave.training.strategy import Standard

BATCH = 128
PROTOCOL_EPOCHS = 85          # per training run of the paper's ResNet-20 protocol
PROTOCOL_SEARCHES = 3         # soft-mask searches, then one standard training of the final ticket
STRATEGIES = ("standard", "soft_mask")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------------
@dataclass
class Workload:
    key: str
    label: str
    model_name: str
    dataset: str                      # a registered DatasetSpec (only its shape/mean/std are used)
    train_examples: int               # synthetic training-set size
    epoch_examples: int               # examples per epoch used to scale steps/s to an epoch time
    hparams: TrainingHparams
    soft_mask_ignore: Optional[str]   # layers that keep plain weights in the soft-mask search
    warmup: int
    steps: int
    quick_warmup: int
    quick_steps: int

    @property
    def spec(self) -> DatasetSpec:
        return dataset_specs.get(self.dataset)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.epoch_examples / BATCH)


WORKLOADS = [
    Workload("lenet", "LeNet-300-100 / MNIST-shaped", "mnist_lenet_300_100", "mnist", 60_000, 60_000,
             TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="40ep"), "fc.weight",
             warmup=20, steps=300, quick_warmup=5, quick_steps=60),
    Workload("resnet20", "ResNet-20 / CIFAR-shaped (crop+flip)", "cifar_resnet_20", "cifar10", 50_000, 50_000,
             TrainingHparams(optimizer_name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, training_steps="160ep"),
             None, warmup=2, steps=12, quick_warmup=1, quick_steps=3),
]


def synthetic(spec: DatasetSpec, n: int, seed: int) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *spec.image_shape), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, spec.num_classes, (n,), generator=g)
    return ImageData(images, labels)


def build_model(w: Workload) -> nn.Module:
    spec = w.spec
    hp = ModelHparams(model_name=w.model_name, model_init="kaiming_normal", batchnorm_init="uniform")
    return get_model(hp, spec.image_shape, spec.num_classes, torch.Generator().manual_seed(0))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------
# Ours: loop.train on a short job, timed by the train loader
# ---------------------------------------------------------------------------------------------------
class TimedLoader:
    """Wraps a BatchLoader; reads the clock when the loop asks for batch `warmup` and `warmup + steps`
    (counted across epochs), so the window holds exactly `steps` complete loop iterations."""

    def __init__(self, inner: BatchLoader, warmup: int, steps: int, device: torch.device):
        self.inner, self.warmup, self.steps, self.device = inner, warmup, steps, device
        self.iterations_per_epoch = inner.iterations_per_epoch
        self.num_examples = inner.num_examples
        self.count = 0
        self.t0 = self.t1 = None

    def batches(self, epoch: int, start_iteration: int = 0):
        for batch in self.inner.batches(epoch, start_iteration):
            if self.count == self.warmup:
                synchronize(self.device)
                self.t0 = time.perf_counter()
            elif self.count == self.warmup + self.steps:
                synchronize(self.device)
                self.t1 = time.perf_counter()
            self.count += 1
            yield batch

    @property
    def seconds(self) -> float:
        if self.t0 is None or self.t1 is None:
            raise RuntimeError("the timed window was not completed")
        return self.t1 - self.t0


def soft_mask_factory(w: Workload) -> tuple[Optional[Callable], Optional[str]]:
    """Our soft-mask strategy, imported lazily: (factory, None) or (None, why it is unavailable)."""
    try:
        from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
        hparams = SoftMaskHparams(pruning_layers_to_ignore=w.soft_mask_ignore)
    except Exception as e:  # noqa: BLE001 - the plug-in may be missing or half-written
        return None, f"{type(e).__name__}: {e}"
    return (lambda model, mask: SoftMask(model, mask, hparams)), None


def time_ours(w: Workload, strategy: str, train_loader: BatchLoader, test_loader: BatchLoader,
              platform: Platform, warmup: int, steps: int) -> float:
    """Seconds per step of loop.train over `steps` iterations after `warmup`."""
    if strategy == "standard":
        make_strategy = Standard
    else:
        make_strategy, why = soft_mask_factory(w)
        if make_strategy is None:
            raise RuntimeError(why)
    model = build_model(w)
    timed = TimedLoader(train_loader, warmup, steps, platform.torch_device)
    ipe = timed.iterations_per_epoch
    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        job = loop.TrainJob(output_dir=Path(tmp), model=model, mask=Mask.ones_like(model),
                            train_loader=timed, test_loader=test_loader, hparams=w.hparams,
                            start_step=Step.zero(ipe), end_step=Step(warmup + steps + 1, ipe),
                            platform=platform, make_strategy=make_strategy,
                            quiet=True, evaluate_only_at_end=True, label=f"bench {w.key} {strategy}")
        loop.train(job)
    return timed.seconds / steps


# ---------------------------------------------------------------------------------------------------
# Reference: per-sample Dataset + DataLoader + plain loop (+ parametrize soft masks)
# ---------------------------------------------------------------------------------------------------
class PerSampleDataset(Dataset):
    """One uint8 image at a time -> [pad 4 + random crop, random horizontal flip] -> float/255 ->
    normalize, all per sample (torchvision's CIFAR recipe, here with plain torch ops)."""

    def __init__(self, data: ImageData, spec: DatasetSpec, augment: bool):
        self.images = data.images
        self.labels = data.labels.tolist()       # python ints, as torchvision datasets return
        self.augment = augment
        self.height, self.width = data.images.shape[2:]
        self.mean = torch.tensor(spec.mean).view(-1, 1, 1)
        self.std = torch.tensor(spec.std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i]                                             # uint8 [C, H, W]
        if self.augment:
            img = F.pad(img, (PAD, PAD, PAD, PAD))                      # RandomCrop(padding=4)
            top = int(torch.randint(0, 2 * PAD + 1, (1,)).item())
            left = int(torch.randint(0, 2 * PAD + 1, (1,)).item())
            img = img[:, top:top + self.height, left:left + self.width]
            if torch.rand(1).item() < 0.5:                               # RandomHorizontalFlip
                img = img.flip(-1)
        x = img.float().div(255.0)                                       # ToTensor
        x = x.sub(self.mean).div(self.std)                               # Normalize
        return x, self.labels[i]


class MaskParametrization(nn.Module):
    """weight -> weight * mask, with the mask a trainable nn.Parameter (recomputed at every access)."""

    def __init__(self, shape: torch.Size, value: float):
        super().__init__()
        self.mask = nn.Parameter(torch.full(shape, value))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def add_reference_masks(model: nn.Module, ignore: Optional[str]) -> list[nn.Parameter]:
    skip = {s.strip() for s in (ignore or "").split(",") if s.strip()}
    masks = []
    for name in model.prunable_layer_names:
        if name in skip:
            continue
        module = model.get_submodule(name.rsplit(".", 1)[0])
        p = MaskParametrization(module.weight.shape, 0.5)
        parametrize.register_parametrization(module, "weight", p)
        masks.append(p.mask)
    return masks


def reference_log_penalty(masks: list[nn.Parameter], lam: float = 1e-6, eps: float = 0.1) -> torch.Tensor:
    scale = math.log((1 + eps) / eps)
    total = 0.0
    for m in masks:                                                      # Python loop over layers
        total = total + (torch.log1p(m / eps) / scale).sum()
    return lam * total


def _cycle(loader: DataLoader):
    while True:
        yield from loader


def time_reference(w: Workload, strategy: str, dataset: PerSampleDataset, device: torch.device,
                   workers: int, warmup: int, steps: int) -> float:
    """Seconds per step of the conventional loop over `steps` iterations after `warmup`."""
    model = build_model(w).to(device)
    masks = add_reference_masks(model, w.soft_mask_ignore) if strategy == "soft_mask" else []
    mask_ids = {id(m) for m in masks}
    hp = w.hparams
    groups = [{"params": [p for p in model.parameters() if id(p) not in mask_ids]}]
    if masks:
        groups.append({"params": masks, "weight_decay": 0.0})
    optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay or 0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda", drop_last=False)
    batches = _cycle(loader)
    model.train()
    t0 = None
    for i in range(warmup + steps):
        if i == warmup:
            synchronize(device)
            t0 = time.perf_counter()
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = criterion(model(x), y)
        if masks:
            loss = loss + reference_log_penalty(masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if masks:
            with torch.no_grad():
                for m in masks:
                    m.clamp_(0.0, 1.0)
    synchronize(device)
    seconds = time.perf_counter() - t0
    del batches  # shuts the workers down
    return seconds / steps


# ---------------------------------------------------------------------------------------------------
# Running, summarizing, printing
# ---------------------------------------------------------------------------------------------------
@dataclass
class Measure:
    seconds: list[float] = field(default_factory=list)   # per step, one per repetition
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.ok else float("nan")

    @property
    def steps_per_s(self) -> float:
        return 1.0 / self.median if self.ok else float("nan")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name or pyplatform.processor() or 'unknown CPU'} ({os.cpu_count()} logical CPUs)"


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def our_platforms(device: torch.device) -> dict[str, Platform]:
    """`ours`: the defaults a user gets; `ours_fp32`: the same with --precision fp32, listed when the
    default is bf16, so the table separates what reduced precision buys from the rest."""
    default = Platform(device=str(device))
    out = {"ours": default}
    if default.autocast_dtype is not None:
        out["ours_fp32"] = Platform(device=str(device), precision="fp32")
    return out


def variant_name(variant: str, device: torch.device) -> str:
    if variant.startswith("ours"):
        return f"ours (loop.train + BatchLoader; {our_platforms(device)[variant].summary()})"
    return f"reference, num_workers={variant[5:]}"


def variants(workers: list[int], device: torch.device) -> list[str]:
    return list(our_platforms(device)) + [f"ref_w{k}" for k in workers]


def run_one(variant: str, w: Workload, strategy: str, ctx: dict, device: torch.device,
            warmup: int, steps: int) -> float:
    # Each side runs with its own allocator setting: ours with the platform's (tuned glibc
    # thresholds), the conventional reference with glibc's defaults.
    if variant.startswith("ours"):
        allocator.keep_freed_blocks()
        return time_ours(w, strategy, ctx["train_loader"], ctx["test_loader"], our_platforms(device)[variant],
                         warmup, steps)
    allocator.system_defaults()
    return time_reference(w, strategy, ctx["dataset"], device, int(variant[5:]), warmup, steps)


def measure(args, device: torch.device) -> dict:
    results: dict = {}
    for w in WORKLOADS:
        warmup = args.warmup if args.warmup is not None else (w.quick_warmup if args.quick else w.warmup)
        steps = args.steps if args.steps is not None else (w.quick_steps if args.quick else w.steps)
        spec = w.spec
        log(f"[{w.key}] building synthetic data ({w.train_examples} examples) ...")
        data = synthetic(spec, w.train_examples, seed=1)
        test = synthetic(spec, BATCH, seed=2)
        cl = Platform(device=str(device)).channels_last
        ctx = {
            "train_loader": BatchLoader(data, spec, BATCH, device, train=True, augment=spec.augment, seed=0,
                                        channels_last=cl),
            "test_loader": BatchLoader(test, spec, BATCH, device, train=False, augment=False, seed=0,
                                       channels_last=cl),
            "dataset": PerSampleDataset(data, spec, augment=spec.augment),
        }
        configs = [(v, s) for s in STRATEGIES for v in variants(args.workers, device)]
        table = {c: Measure() for c in configs}
        # Untimed warm-up of every configuration (allocator, kernels, first-call work, worker start-up).
        for c in configs:
            try:
                run_one(c[0], w, c[1], ctx, device, warmup, 1)
            except Exception as e:  # noqa: BLE001 - report the row as unavailable, keep the rest
                table[c].error = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                log(f"[{w.key}] {c[0]} {c[1]} unavailable: {table[c].error}")
        live = [c for c in configs if table[c].error is None]
        for r in range(args.reps):
            order = live[r % len(live):] + live[:r % len(live)] if live else []   # rotate: interleaved
            for c in order:
                sec = run_one(c[0], w, c[1], ctx, device, warmup, steps)
                table[c].seconds.append(sec)
                log(f"[{w.key}] rep {r + 1}/{args.reps} {c[0]:>9} {c[1]:<9} {1 / sec:8.2f} steps/s")
        results[w.key] = {"workload": w, "warmup": warmup, "steps": steps, "table": table}
    return results


def fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def summarize(results: dict, workers: list[int]) -> dict:
    """Per row: ours and best-reference figures; the reference is the fastest measured loader setting."""
    rows = []
    for key, res in results.items():
        w: Workload = res["workload"]
        table = res["table"]
        for s in STRATEGIES:
            ours = table[("ours", s)]
            refs = [(k, table[(f"ref_w{k}", s)]) for k in workers if table[(f"ref_w{k}", s)].ok]
            best_k, best = min(refs, key=lambda kv: kv[1].median) if refs else (None, Measure(error="no reference"))
            o_std, o_soft = table[("ours", "standard")], table[("ours", "soft_mask")]
            fp32 = table.get(("ours_fp32", s), Measure(error="default is fp32"))
            f_std, f_soft = (table.get(("ours_fp32", k), Measure(error="n/a")) for k in STRATEGIES)
            row = {
                "key": key, "label": w.label, "strategy": s,
                "ours_steps_per_s": ours.steps_per_s, "ref_steps_per_s": best.steps_per_s,
                "ref_workers": best_k,
                "speedup": best.median / ours.median if ours.ok and best.ok else float("nan"),
                "ours_epoch_s": ours.median * w.steps_per_epoch if ours.ok else float("nan"),
                "ref_epoch_s": best.median * w.steps_per_epoch if best.ok else float("nan"),
                "soft_over_std_ours": o_soft.median / o_std.median if o_soft.ok and o_std.ok else float("nan"),
                "ours_fp32_steps_per_s": fp32.steps_per_s,
                "speedup_fp32": best.median / fp32.median if fp32.ok and best.ok else float("nan"),
                "soft_over_std_ours_fp32": f_soft.median / f_std.median if f_soft.ok and f_std.ok else float("nan"),
                "ours_error": ours.error,
            }
            # Paired per-repetition ratios (ours and the reference ran back to back in each repetition).
            paired = ([r / o for r, o in zip(best.seconds, ours.seconds)] if ours.ok and best.ok else [])
            row["speedup_paired"] = ([statistics.median(paired), min(paired), max(paired)] if paired
                                     else [float("nan")] * 3)
            if s == "soft_mask" and refs:
                ref_std = min((table[(f"ref_w{k}", "standard")] for k in workers
                               if table[(f"ref_w{k}", "standard")].ok), key=lambda m: m.median, default=None)
                row["soft_over_std_ref"] = best.median / ref_std.median if ref_std else float("nan")
            else:
                row["soft_over_std_ref"] = float("nan")
            rows.append(row)
    return {"rows": rows}


def protocol_estimate(summary: dict) -> Optional[dict]:
    rows = {(r["key"], r["strategy"]): r for r in summary["rows"]}
    std, soft = rows.get(("resnet20", "standard")), rows.get(("resnet20", "soft_mask"))
    if not std or not soft:
        return None
    out = {}
    for who in ("ours", "ref"):
        e_std, e_soft = std[f"{who}_epoch_s"], soft[f"{who}_epoch_s"]
        out[who] = PROTOCOL_EPOCHS * (PROTOCOL_SEARCHES * e_soft + e_std)
    return out


def targets(summary: dict, device: torch.device) -> list[tuple[str, str, str]]:
    rows = {(r["key"], r["strategy"]): r for r in summary["rows"]}
    out = []

    def verdict(ok: Optional[bool]) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    fp32_too = any(math.isfinite(r["speedup_fp32"]) for r in summary["rows"])
    sides = [("", "")] + ([("_fp32", ", ours in fp32")] if fp32_too else [])
    for suffix, note in sides:
        for s in STRATEGIES:
            x = rows[("lenet", s)][f"speedup{suffix}"]
            out.append((f"{device.type.upper()} LeNet-300-100 epoch >= 3x faster than the reference ({s}{note})",
                        f"{fmt(x, 3)}x", verdict(None if not math.isfinite(x) else x >= 3.0)))
        for s in STRATEGIES:
            x = rows[("resnet20", s)][f"speedup{suffix}"]
            out.append((f"ResNet-20 steps no slower than the reference ({s}{note})",
                        f"{fmt(x, 3)}x", verdict(None if not math.isfinite(x) else x >= 1.0)))
        for key, label in (("lenet", "LeNet-300-100"), ("resnet20", "ResNet-20")):
            x = rows[(key, "soft_mask")][f"soft_over_std_ours{suffix}"]
            out.append((f"{label}: soft-mask step time <= 1.15x standard (ours{note.replace(', ours', '')})",
                        f"{fmt(x, 3)}x", verdict(None if not math.isfinite(x) else x <= 1.15)))
    return out


def hours(seconds: float) -> str:
    return "n/a" if not math.isfinite(seconds) else f"{seconds / 3600:.2f} h"


def report(args, device: torch.device, results: dict, summary: dict, load_before: str, wall: float) -> str:
    lines = []
    threads = torch.get_num_threads()
    lines.append(f"## Speed: {device_name(device)}")
    lines.append("")
    lines.append(f"torch {torch.__version__}, {threads} intra-op thread{'s' if threads != 1 else ''}, "
                 f"device `{device}`, ours: {Platform(device=str(device)).summary()}, tuned allocator "
                 f"(reference: fp32, contiguous, glibc's default allocator), "
                 f"{'quick' if args.quick else 'default'} run, {args.reps} repetitions (median), "
                 f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
                 f"load average (1/5/15 min) {load_before} before, {load_average()} after, {wall:.0f} s total.")
    steps_note = ", ".join(f"{res['workload'].key}: {res['warmup']} warm-up + {res['steps']} timed steps"
                           for res in results.values())
    lines.append(f"Per repetition: {steps_note}. Reference loaders tried: "
                 f"{', '.join(f'num_workers={k}' for k in args.workers)} (the faster one is reported).")
    lines.append("")
    lines.append("| Model / data | Strategy | Ours steps/s | Reference steps/s | Speed-up (ours/ref) "
                 "| Ours epoch (s) | Reference epoch (s) | Soft-mask/standard time, ours | Soft-mask/standard time, ref "
                 "| Ours fp32 steps/s | Speed-up, ours fp32 | Soft-mask/standard, ours fp32 |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in summary["rows"]:
        ref = fmt(r["ref_steps_per_s"]) + (f" (w{r['ref_workers']})" if r["ref_workers"] is not None else "")
        soft = r["strategy"] == "soft_mask"
        ratio_o = fmt(r["soft_over_std_ours"]) if soft else "1 (base)"
        ratio_r = fmt(r["soft_over_std_ref"]) if soft else "1 (base)"
        ratio_f = fmt(r["soft_over_std_ours_fp32"]) if soft else "1 (base)"
        lines.append(f"| {r['label']} | {r['strategy']} | {fmt(r['ours_steps_per_s'])} | {ref} | {fmt(r['speedup'])} "
                     f"| {fmt(r['ours_epoch_s'], 1)} | {fmt(r['ref_epoch_s'], 1)} | {ratio_o} | {ratio_r} "
                     f"| {fmt(r['ours_fp32_steps_per_s'])} | {fmt(r['speedup_fp32'])} | {ratio_f} |")
    lines.append("")
    lines.append("Epoch times are the median step time x ceil(epoch examples / 128): 60,000 examples "
                 "(469 steps) for MNIST, 50,000 (391 steps) for CIFAR-10; they exclude per-epoch evaluation "
                 "and checkpointing. `(wK)`: the reference DataLoader's num_workers.")
    errors = [f"{r['label']} {r['strategy']}: {r['ours_error']}" for r in summary["rows"] if r["ours_error"]]
    for e in errors:
        lines.append(f"Ours unavailable: {e}")
    lines.append("")
    lines.append("All measurements (steps/s: median [min - max] over repetitions):")
    lines.append("")
    lines.append("| Model | Strategy | Variant | Median steps/s | Min | Max |")
    lines.append("|---|---|---|---:|---:|---:|")
    for res in results.values():
        w = res["workload"]
        for (variant, s), m in res["table"].items():
            name = variant_name(variant, device)
            if m.ok:
                lines.append(f"| {w.model_name} | {s} | {name} | {fmt(m.steps_per_s)} "
                             f"| {fmt(1 / max(m.seconds))} | {fmt(1 / min(m.seconds))} |")
            else:
                lines.append(f"| {w.model_name} | {s} | {name} | n/a | n/a | n/a |")
    lines.append("")
    lines.append("Speed-up per repetition (ours vs the reported reference, run back to back in the same "
                 "repetition): median [min - max]: " + "; ".join(
                     f"{r['key']} {r['strategy']} {fmt(r['speedup_paired'][0])} "
                     f"[{fmt(r['speedup_paired'][1])} - {fmt(r['speedup_paired'][2])}]" for r in summary["rows"]) + ".")
    est = protocol_estimate(summary)
    lines.append("")
    if est:
        ratio = est["ref"] / est["ours"] if math.isfinite(est["ours"]) and est["ours"] > 0 else float("nan")
        lines.append(f"Paper's ResNet-20 protocol (3 soft-mask searches + the final ticket, 4 x {PROTOCOL_EPOCHS} "
                     f"epochs of 50,000 CIFAR-10 images, batch 128), training steps only: ours "
                     f"{hours(est['ours'])}, reference {hours(est['ref'])} (x{fmt(ratio)}).")
    lines.append("")
    lines.append("| Target | Measured | Verdict |")
    lines.append("|---|---:|---|")
    for name, value, verdict in targets(summary, device):
        lines.append(f"| {name} | {value} | {verdict} |")
    lines.append("")
    lines.append(f"torchvision imported: {'yes' if 'torchvision' in sys.modules else 'no'}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda[:N] (default: cuda when available)")
    p.add_argument("--quick", action="store_true", help="few steps and repetitions, reference with num_workers=0 only")
    p.add_argument("--steps", type=int, default=None, help="timed steps per repetition for every workload")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before each timed window")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5, quick 2)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    p.add_argument("--workers", default=None, help="reference DataLoader num_workers to try, e.g. 0,2 "
                   "(default 0,2; quick 0)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    if args.reps is None:
        args.reps = 2 if args.quick else 5
    args.workers = [int(k) for k in (args.workers or ("0" if args.quick else "0,2")).split(",")]
    if args.steps is not None and args.steps < 1 or args.reps < 1 or any(k < 0 for k in args.workers):
        p.error("--steps and --reps must be >= 1, --workers >= 0")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = load_average()
    start = time.time()
    results = measure(args, device)
    summary = summarize(results, args.workers)
    text = report(args, device, results, summary, load_before, time.time() - start)
    print(text, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "rows": summary["rows"], "protocol_seconds": protocol_estimate(summary),
            "targets": targets(summary, device),
            "raw_seconds_per_step": {f"{k}/{v}/{s}": m.seconds for k, res in results.items()
                                     for (v, s), m in res["table"].items()},
        }, indent=2, default=str))
    return summary


if __name__ == "__main__":
    main()
