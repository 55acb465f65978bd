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

Parts: bench/harness.py (the workloads, our timed path, the interleaved repetitions), bench/reference.py
(the conventional pipeline) and this file (what is compared, the summary, targets and the report).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (BATCH, WORKLOADS, Measure, Workload, device_name, interleaved, load_average,  # noqa: E402
                     log, our_platforms, synthetic, time_ours)
from reference import PerSampleDataset, time_reference  # noqa: E402

from open_lth_concave.datasets.loader import BatchLoader  # noqa: E402
from open_lth_concave.platform import Platform, allocator  # noqa: E402

PROTOCOL_EPOCHS = 85          # per training run of the paper's ResNet-20 protocol
PROTOCOL_SEARCHES = 3         # soft-mask searches, then one standard training of the final ticket
STRATEGIES = ("standard", "soft_mask")


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
        table = interleaved(w.key, configs, lambda c, n: run_one(c[0], w, c[1], ctx, device, warmup, n),
                            steps, args.reps)
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
