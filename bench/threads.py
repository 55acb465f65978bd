#!/usr/bin/env python
"""The automatic thread count (`--threads=0`) against 1 thread and all cores, side by side in one run.

    python bench/threads.py [--reps 2] [--quick] [--json FILE]
    python bench/threads.py --lottery [--reps 5]     # the whole digits lottery: default vs --threads=1

Rows: LeNet-300-100 on MNIST-shaped data and ResNet-20 on CIFAR-shaped data (bench/harness.py's
workloads: synthetic uint8 images, batch 128, the real training path `loop.train` fed by `BatchLoader`,
platform defaults), each measured twice: "idle" (nothing started by the benchmark; whatever else runs
on the machine keeps running, and the report prints the load it saw) and "busy" (one competing
process spinning on a core for the whole condition). Every setting runs in a fresh process (a thread
count is per process): `auto` chooses exactly as the command line does (Platform.choose_threads, at
the moment the process starts, so it sees the competitor), `1` and `all` (the cores this process may
use) are fixed. Settings alternate within each repetition; each number is the median step time over
the repetitions. The report gives auto's time over the best of the three (the target: at most 1.2).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = ("auto", "1", "all")
CONDITIONS = ("idle", "busy")
MODELS = ("lenet", "resnet20")
SPIN = "while True:\n    pass\n"


def worker(model_key: str, setting: str, quick: bool) -> dict:
    """In a fresh process: set the threads, time `steps` training steps, return the numbers."""
    sys.path.insert(0, str(HERE))
    import torch

    import harness  # bench/harness.py: the workloads and the timed loop.train
    from open_lth_concave.datasets.loader import BatchLoader
    from open_lth_concave.platform import Platform, allocator, threads
    w = next(x for x in harness.WORKLOADS if x.key == model_key)
    platform = Platform(device="cpu", threads=0 if setting == "auto" else
                        (threads.usable_cpus() if setting == "all" else int(setting)))
    platform.apply()
    allocator.keep_freed_blocks()
    spec = w.spec
    from open_lth_concave.models import registry as models
    with torch.device("meta"):
        meta = models.get(w.model_name).build(tuple(spec.image_shape), spec.num_classes)
    platform.choose_threads(meta, tuple(spec.image_shape), harness.BATCH)
    # LeNet steps take milliseconds: its full window (300 steps) keeps noise down; ResNet-20's take seconds here
    warmup, steps = (w.quick_warmup, w.quick_steps) if quick else \
        ((w.warmup, w.steps) if w.key == "lenet" else (w.quick_warmup + 1, w.quick_steps))
    n = harness.BATCH * (warmup + steps + 2)
    train = BatchLoader(harness.synthetic(spec, n, 0), spec, harness.BATCH, platform.torch_device, train=True,
                        augment=spec.augment, seed=0, channels_last=platform.channels_last)
    test = BatchLoader(harness.synthetic(spec, 128, 1), spec, 128, platform.torch_device, train=False,
                       augment=False, seed=0, channels_last=platform.channels_last)
    seconds = harness.time_ours(w, "standard", train, test, platform, warmup, steps)
    chosen = threads.last_choice
    return {"threads": torch.get_num_threads(), "reason": chosen.reason if setting == "auto" and chosen else setting,
            "step_ms": 1e3 * seconds, "steps": steps}


def run_worker(model_key: str, setting: str, quick: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", model_key, setting] + (["--quick"] if quick else [])
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"worker {model_key} {setting} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_busy(seconds: float = 1.0) -> float:
    from open_lth_concave.platform import threads
    threads._busy_cache = None
    value = threads.busy_cpus(seconds)
    threads._busy_cache = None
    return value


def measure(reps: int, quick: bool) -> dict:
    results: dict = {}
    seen: dict = {}
    for condition in CONDITIONS:
        spinner = None
        if condition == "busy":
            spinner = subprocess.Popen([sys.executable, "-c", SPIN])
            time.sleep(1.0)
        try:
            seen[condition] = cpu_busy()
            for model in MODELS:
                for rep in range(reps):
                    order = SETTINGS[rep % 3:] + SETTINGS[:rep % 3]
                    for setting in order:
                        r = run_worker(model, setting, quick)
                        results.setdefault((condition, model, setting), []).append(r)
                        print(f"{condition} {model} {setting}: {r['threads']} thread(s), {r['step_ms']:.1f} ms/step "
                              f"({r['reason']})", file=sys.stderr, flush=True)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    return {"results": results, "busy_seen": seen}


def report(data: dict, reps: int, quick: bool) -> str:
    from open_lth_concave.platform import threads
    cpus, usable = os.cpu_count(), threads.usable_cpus()
    labels = {"lenet": "LeNet-300-100 / MNIST-shaped", "resnet20": "ResNet-20 / CIFAR-shaped"}
    lines = [f"{cpus} CPUs ({usable} usable by this process), 1-minute load average at the start "
             f"{data.get('load_before', 'n/a')}, batch 128, standard training step, "
             f"median of {reps} repetition(s){' (--quick)' if quick else ''}; cores busy before each condition "
             f"(/proc/stat over 1 s, competitor included): "
             + ", ".join(f"{c} {b:.2f}" for c, b in data["busy_seen"].items()), "",
             "| model | condition | auto: threads (why) | auto ms/step | 1 thread ms/step | all cores ms/step | auto / best |",
             "|---|---|---|---:|---:|---:|---:|"]
    worst = 0.0
    for model in MODELS:
        for condition in CONDITIONS:
            runs = {s: data["results"][condition, model, s] for s in SETTINGS}
            med = {s: statistics.median(r["step_ms"] for r in runs[s]) for s in SETTINGS}
            chosen = sorted({(r["threads"], r["reason"]) for r in runs["auto"]})
            ratio = med["auto"] / min(med.values())
            worst = max(worst, ratio)
            lines.append(f"| {labels[model]} | {condition} | {'; '.join(f'{t} ({why})' for t, why in chosen)} | "
                         f"{med['auto']:.1f} | {med['1']:.1f} | {med['all']:.1f} (= {runs['all'][0]['threads']}) | "
                         f"{ratio:.2f} |")
    lines += ["", f"Worst auto / best: {worst:.2f} (target: at most 1.20)."]
    return "\n".join(lines)


LOTTERY = ["lottery", "--default_hparams=digits_lenet_300_100", "--levels=2", "--quiet"]


def whole_lottery(reps: int) -> str:
    """The digits lottery as a user runs it (a fresh process, a fresh results folder each time), with the
    default thread choice and with --threads=1 alternately: the default must cost nothing (target <= 1.05)."""
    import tempfile
    times: dict[str, list[float]] = {"default": [], "--threads=1": []}
    for _ in range(reps):
        for name in times:
            with tempfile.TemporaryDirectory() as root:
                extra = [] if name == "default" else [name]
                began = time.perf_counter()
                subprocess.run([sys.executable, "-m", "open_lth_concave", *LOTTERY, *extra, "--root", root], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=HERE.parent)
                times[name].append(time.perf_counter() - began)
    ratios = [a / b for a, b in zip(times["default"], times["--threads=1"])]
    return "\n".join([f"## `open_lth {' '.join(LOTTERY)}`, {reps} alternating pairs, fresh process and folder each",
                      "| setting | median wall s | each run |", "|---|---|---|",
                      *[f"| {k} | {statistics.median(v):.2f} | {', '.join(f'{x:.2f}' for x in v)} |" for k, v in times.items()],
                      f"default / --threads=1 per pair: median {statistics.median(ratios):.3f} (target: at most 1.05)"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="fewer steps per measurement (the smoke test)")
    p.add_argument("--json", type=str, default=None)
    p.add_argument("--worker", nargs=2, metavar=("MODEL", "SETTING"), help=argparse.SUPPRESS)
    p.add_argument("--lottery", action="store_true", help="instead: the whole digits lottery, default vs --threads=1")
    args = p.parse_args(argv)
    if args.lottery:
        print(whole_lottery(args.reps))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.quick)))
        return 0
    load_before = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    data = measure(args.reps, args.quick)
    data["load_before"] = load_before
    text = report(data, args.reps, args.quick)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"busy_seen": data["busy_seen"], "results": {
            "/".join(k): v for k, v in data["results"].items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
