"""Cost of the soft-mask search step vs a standard training step (time and peak memory), side by side.

    python bench/soft_mask_overhead.py [--steps 30] [--threads 1] [--devices cpu,cuda] [--precision auto]

Each (model, strategy, device) case runs in a FRESH subprocess doing the training loop's step
(forward through the strategy, cross-entropy (+ an autograd penalty if the strategy has one), backward,
before_step (the soft mask adds its penalty gradient there), SGD with momentum, after_step) on one
fixed batch of 128, with the platform defaults a run gets (`--precision` to change the precision).
Time: median over steps after warm-up. Peak memory: on CPU the growth of the process's maximum
resident set size (ru_maxrss) over its resident size right after the imports, i.e. model + batch +
optimizer state + training; on CUDA torch.cuda.max_memory_allocated.
Targets: time <= 1.15x, memory <= 1.3x.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = [("LeNet-300-100", "mnist_lenet_300_100", (1, 28, 28), "fc.weight"),
         ("ResNet-20", "cifar_resnet_20", (3, 32, 32), "fc.weight")]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(model_name: str, shape: tuple, ignore: str, strategy_name: str, device: str, steps: int,
          precision: str = "auto") -> dict:
    import torch
    import torch.nn.functional as F
    import open_lth_concave.concave  # noqa: F401
    from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
    from open_lth_concave.foundations.hparams import ModelHparams
    from open_lth_concave.models import get_model
    from open_lth_concave.platform import Platform
    from open_lth_concave.pruning.mask import Mask
    from open_lth_concave.training.loop import autocast_context, update
    from open_lth_concave.training.strategy import Standard

    platform = Platform(device=device, precision=precision)
    platform.apply()                         # the allocator setting a CLI run gets
    base_rss = rss_mib()   # after imports: what follows (model, batch, optimizer state, training) is measured
    model = get_model(ModelHparams(model_name=model_name, model_init="kaiming_normal", batchnorm_init="uniform"),
                      shape, 10, torch.Generator().manual_seed(0)).to(device)
    memory_format = torch.channels_last if platform.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    mask = Mask.ones_like(model)
    strategy = (SoftMask(model, mask, SoftMaskHparams(pruning_layers_to_ignore=ignore)) if strategy_name == "soft_mask"
                else Standard(model, mask))
    optimizer = torch.optim.SGD([{"params": list(model.parameters())}] + strategy.param_groups(), lr=0.01,
                                momentum=0.9, fused=platform.fused_optimizer)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((128,) + shape, generator=g).to(device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (128,), generator=g).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 5):   # the training loop's step: forward, loss (+ penalty), backward, hooks, SGD
        sync()
        t = time.perf_counter()
        with autocast_context(torch.device(device), platform.autocast_dtype):
            loss = F.cross_entropy(strategy.forward(x).float(), y)
        update(loss, strategy, optimizer)
        sync()
        if i >= 5:
            times.append(time.perf_counter() - t)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    return {"ms": 1e3 * statistics.median(times), "peak_mib": peak, "platform": platform.summary()}


def run_case(args, case, strategy: str, device: str) -> dict:
    label, name, shape, ignore = case
    code = (f"import sys, json, torch; torch.set_num_threads({args.threads}); sys.path.insert(0, 'bench'); "
            f"import soft_mask_overhead as b; print(json.dumps(b.child({name!r}, {shape!r}, {ignore!r}, "
            f"{strategy!r}, {device!r}, {args.steps}, {args.precision!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads in every case")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case; the best is kept")
    parser.add_argument("--devices", type=str, default=None, help="comma-separated (default: cpu, and cuda if present)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="the platform's --precision in every case (default: auto, what a run gets)")
    args = parser.parse_args()
    import torch
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} intra-op thread(s), batch 128, median of {args.steps} steps, "
          f"best of {args.repeats} fresh processes; CPU memory = ru_maxrss growth after imports, "
          "CUDA memory = max_memory_allocated")
    print("| model | device (platform) | standard ms/step | soft_mask ms/step | time ratio | standard peak MiB | "
          "soft_mask peak MiB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for device in devices:
        for case in CASES:
            results = {}
            for strategy in ("standard", "soft_mask"):
                runs = []
                for _ in range(args.repeats):   # interleaving would be fairer still; best-of damps noise
                    runs.append(run_case(args, case, strategy, device))
                results[strategy] = {"ms": min(r["ms"] for r in runs), "peak_mib": min(r["peak_mib"] for r in runs),
                                     "platform": runs[0]["platform"]}
            s, m = results["standard"], results["soft_mask"]
            print(f"| {case[0]} | {s['platform']} | {s['ms']:.2f} | {m['ms']:.2f} | {m['ms'] / s['ms']:.2f}x | "
                  f"{s['peak_mib']:.1f} | {m['peak_mib']:.1f} | {m['peak_mib'] / max(s['peak_mib'], 1e-9):.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
