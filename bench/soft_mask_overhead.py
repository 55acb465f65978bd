"""Cost of the soft-mask search step vs a standard training step (time and peak memory), side by side.

    python bench/soft_mask_overhead.py [--steps 30] [--threads 1] [--devices cpu,cuda] [--precision auto]
                                       [--models LeNet-300-100,ResNet-20] [--repeats 3] [--before DIR]

Time: for each (model, device) ONE fresh process builds the model twice (same seed) and steps the
standard strategy and the soft mask alternately, one step each in turn, on one fixed batch of 128:
the training loop's step (forward through the strategy, cross-entropy, backward, before_step (the
soft mask adds its penalty gradient there), SGD with momentum, after_step), with the platform
defaults a run gets (`--precision` to change the precision). Each process gives the median step
time of each strategy over `--steps` steps after 5 warm-up steps, and their ratio (paired: load
drifts hit both alike); `--repeats` processes per case, the table gives the median ratio and the
best (lowest) step times. `--before DIR`: the same processes also run the package found in DIR
(e.g. `git archive <commit> open_lth_concave | tar -x -C DIR`), alternating with this tree's
(after, before, after, before, ...), so a change is measured side by side in one run.
Peak memory (this tree only): each (model, strategy) in its own fresh process: on CPU the growth of
the process's maximum resident set size (ru_maxrss) over its resident size right after the imports,
i.e. model + batch + optimizer state + training; on CUDA torch.cuda.max_memory_allocated.
Targets: time <= 1.15x, memory <= 1.3x.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

CASES = [("LeNet-300-100", "mnist_lenet_300_100", (1, 28, 28), "fc.weight"),
         ("ResNet-20", "cifar_resnet_20", (3, 32, 32), "fc.weight")]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def build(model_name: str, shape: tuple, ignore: str, strategy_name: str, device: str, platform):
    """(strategy, optimizer, x, y) of one strategy; the same seed for every strategy."""
    import torch
    from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
    from open_lth_concave.foundations.hparams import ModelHparams
    from open_lth_concave.models import get_model
    from open_lth_concave.pruning.mask import Mask
    from open_lth_concave.training.strategy import Standard

    model = get_model(ModelHparams(model_name=model_name, model_init="kaiming_normal", batchnorm_init="uniform"),
                      shape, 10, torch.Generator().manual_seed(0)).to(device)
    memory_format = torch.channels_last if platform.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    mask = Mask.ones_like(model)
    strategy = (SoftMask(model, mask, SoftMaskHparams(pruning_layers_to_ignore=ignore))
                if strategy_name.startswith("soft_mask") else Standard(model, mask))
    optimizer = torch.optim.SGD([{"params": list(model.parameters())}] + strategy.param_groups(), lr=0.01,
                                momentum=0.9, fused=platform.fused_optimizer)
    if strategy_name != "soft_mask_eager" and hasattr(strategy, "bind_optimizer"):
        strategy.bind_optimizer(optimizer)   # as the training loop does: the one-pass mask step where it applies
    g = torch.Generator().manual_seed(0)
    x = torch.randn((128,) + shape, generator=g).to(device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (128,), generator=g).to(device)
    return strategy, optimizer, x, y


def _step(strategy, optimizer, x, y, platform, device: str) -> None:
    """The training loop's step: forward, loss, backward, hooks, SGD."""
    import torch
    import torch.nn.functional as F
    from open_lth_concave.training.loop import autocast_context, update
    with autocast_context(torch.device(device), platform.autocast_dtype):
        loss = F.cross_entropy(strategy.forward(x).float(), y)
    update(loss, strategy, optimizer)


def interleaved(model_name: str, shape: tuple, ignore: str, device: str, steps: int, precision: str = "auto") -> dict:
    """Median step time (ms) of the standard strategy and the soft mask, stepped in turn in this process."""
    import torch
    import open_lth_concave.concave  # noqa: F401
    from open_lth_concave.platform import Platform

    platform = Platform(device=device, precision=precision)
    platform.apply()                         # the allocator setting a CLI run gets
    from open_lth_concave.concave.soft_mask import SoftMask
    names = ("standard", "soft_mask") + (("soft_mask_eager",) if hasattr(SoftMask, "bind_optimizer") else ())
    runs = {name: build(model_name, shape, ignore, name, device, platform) for name in names}
    one_pass = getattr(runs["soft_mask"][0], "_native", None) is not None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(steps + 5):
        for name, run in runs.items():
            sync()
            t = time.perf_counter()
            _step(*run, platform, device)
            sync()
            if i >= 5:
                times[name].append(time.perf_counter() - t)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    return ms | {"ratio": ms["soft_mask"] / ms["standard"], "platform": platform.summary(), "one_pass": one_pass,
                 "eager_ratio": ms["soft_mask_eager"] / ms["standard"] if "soft_mask_eager" in ms else None}


def child(model_name: str, shape: tuple, ignore: str, strategy_name: str, device: str, steps: int,
          precision: str = "auto") -> dict:
    """Peak memory of one strategy alone in this process."""
    import torch
    import open_lth_concave.concave  # noqa: F401
    from open_lth_concave.platform import Platform

    platform = Platform(device=device, precision=precision)
    platform.apply()
    base_rss = rss_mib()   # after imports: what follows (model, batch, optimizer state, training) is measured
    run = build(model_name, shape, ignore, strategy_name, device, platform)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        _step(*run, platform, device)
    if device == "cuda":
        torch.cuda.synchronize()
        return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20}
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss}


def run_python(args, call: str, package_dir: Path | None = None) -> dict:
    """`call` (a function of this module) in a fresh process, importing open_lth_concave from
    `package_dir` (None: this tree)."""
    env = dict(os.environ)
    cwd = REPO if package_dir is None else package_dir
    env["PYTHONPATH"] = str(cwd) + os.pathsep + env.get("PYTHONPATH", "")
    code = (f"import sys, json, torch; torch.set_num_threads({args.threads}); sys.path.append({str(BENCH)!r}); "
            f"import soft_mask_overhead as b; print(json.dumps(b.{call}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd)
    if out.returncode != 0:
        raise SystemExit(f"failed ({out.returncode}): {call} from {cwd}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per strategy in each process")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads in every case")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case (and per version)")
    parser.add_argument("--devices", type=str, default=None, help="comma-separated (default: cpu, and cuda if present)")
    parser.add_argument("--models", type=str, default=",".join(c[0] for c in CASES),
                        help="comma-separated, of: " + ", ".join(c[0] for c in CASES))
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="the platform's --precision in every case (default: auto, what a run gets)")
    parser.add_argument("--before", type=Path, default=None,
                        help="a folder holding another version's open_lth_concave package, timed alongside")
    parser.add_argument("--no_memory", action="store_true", help="skip the peak-memory processes")
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in {c[0] for c in CASES}]
    if unknown:
        raise SystemExit(f"unknown --models {','.join(unknown)}; valid: {', '.join(c[0] for c in CASES)}")
    if args.before is not None and not (args.before / "open_lth_concave" / "__init__.py").exists():
        raise SystemExit(f"--before {args.before}: no open_lth_concave package in it")
    import torch
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    versions = {"after": None} | ({"before": args.before.resolve()} if args.before is not None else {})
    print(f"torch {torch.__version__}, {args.threads} intra-op thread(s), batch 128, SGD momentum 0.9; time: standard "
          f"and soft_mask stepped in turn in one process, median of {args.steps} steps each, {args.repeats} fresh "
          f"processes per version{' (after/before alternating)' if args.before else ''}: median ratio, best ms; "
          "CPU memory = ru_maxrss growth after imports, CUDA memory = max_memory_allocated")
    print("soft_mask: the step a run gets (the one-pass CPU mask step where it applies, `one-pass` below); eager: the "
          "same strategy without it (--native_kernels=off), timed in the same processes")
    print("| model | device (platform) | version | standard ms/step | soft_mask ms/step | time ratio (median) | "
          "time ratios (each process) | eager ratio (median) | standard peak MiB | soft_mask peak MiB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        for label, name, shape, ignore in CASES:
            if label not in models:
                continue
            call = f"interleaved({name!r}, {shape!r}, {ignore!r}, {device!r}, {args.steps}, {args.precision!r})"
            timed: dict[str, list[dict]] = {v: [] for v in versions}
            for _ in range(args.repeats):
                for version, package in versions.items():
                    timed[version].append(run_python(args, call, package))
            peak = {}
            if not args.no_memory:
                peak = {st: min(run_python(args, f"child({name!r}, {shape!r}, {ignore!r}, {st!r}, {device!r}, 10, "
                                                 f"{args.precision!r})")["peak_mib"] for _ in range(args.repeats))
                        for st in ("standard", "soft_mask")}
            for version, runs in timed.items():
                ratios = [r["ratio"] for r in runs]
                memory = ("| - | - | - |" if version != "after" or not peak else
                          f"| {peak['standard']:.1f} | {peak['soft_mask']:.1f} | "
                          f"{peak['soft_mask'] / max(peak['standard'], 1e-9):.2f}x |")
                eager = [r["eager_ratio"] for r in runs if r.get("eager_ratio") is not None]
                kind = ", one-pass" if runs[0].get("one_pass") else ""
                print(f"| {label} | {runs[0]['platform']}{kind} | {version} | {min(r['standard'] for r in runs):.2f} | "
                      f"{min(r['soft_mask'] for r in runs):.2f} | {statistics.median(ratios):.2f}x | "
                      f"{', '.join(f'{x:.2f}' for x in ratios)} | "
                      f"{f'{statistics.median(eager):.2f}x' if eager else '-'} {memory}", flush=True)


if __name__ == "__main__":
    main()
