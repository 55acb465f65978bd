"""Everything a first GPU session should measure, in one command, within 10 minutes, into one file.

    python bench/gpu_check.py [--out gpu_check.md]        # on a machine with CUDA
    python bench/gpu_check.py --dry-run [--out FILE]      # anywhere (CPU): the same steps, tiny, no GPU figure

GPU FIGURES NEED A GPU. Until someone runs this on one, every GPU figure in README.md, bench/README.md
and README_concave.md stays "not measured". The dry run exists so that this script does not rot: it
runs every step on the CPU in its smallest form (the CUDA tests are collected, the two benchmarks are
checked for every flag the GPU run passes them, the lotteries run for 3 iterations on the embedded
digits data; CI runs it: tests/test_gpu_check.py), and its file says in its first line that it
holds no GPU figure.

Steps (each a fresh process with its own time limit; the whole run stops starting steps after
--budget seconds, 570 by default, so it ends within 10 minutes):
  1. platform: torch, CUDA, the device, nvidia-smi
  2. the CUDA tests (tests/test_cuda.py: lottery on CUDA with/without --compile and fp32, a bf16
     ResNet step, soft-mask gradients CUDA vs CPU)
  3. the speed benchmark (bench/speed.py --quick: ours vs a conventional PyTorch loop, LeNet and ResNet-20)
  4. the soft-mask overhead (bench/soft_mask_overhead.py: search step vs standard step, time and memory)
  5. a short ResNet-20 CIFAR-10 lottery, IMP and concave_log (target mode, 20% per level): level 0 and
     level 1, 2 epochs per round, with the wall time of each (needs CIFAR-10 under
     $OPEN_LTH_DATASETS/cifar10; without it the step says so and its figures stay "not measured")
Every step's command, exit status, wall time and full output go to the one --out file.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def flags_check(script: str, flags: list[str]) -> list[str]:
    """A command that fails unless `script --help` runs and lists every flag the GPU run passes it."""
    code = (f"import subprocess, sys; h = subprocess.run([sys.executable, {script!r}, '--help'], capture_output=True, "
            f"text=True, check=True).stdout; missing = [f for f in {flags!r} if f not in h]; "
            "print('flags of the GPU run:', ', '.join(" + repr(flags) + "), '- missing:', missing or 'none'); "
            "sys.exit(1 if missing else 0)")
    return [PY, "-c", code]


def steps(dry: bool, scratch: str) -> list[tuple[str, list[str], int]]:
    """(title, command, time limit in seconds) per step. Dry: tiny CPU forms; the benchmarks, whose
    smallest CPU run still takes minutes on a busy machine, are checked for the flags the GPU run uses."""
    device = "cpu" if dry else "cuda"
    lottery_root = os.path.join(scratch, "lottery")
    if dry:   # the same lottery commands on the embedded digits data, a few iterations
        lottery = ["--default_hparams=digits_lenet_300_100", "--training_steps=3it", "--threads=1"]
    else:
        lottery = ["--default_hparams=paper_resnet20_cifar10", "--training_steps=2ep", "--milestone_steps=1ep"]
    common = ["--levels=1", f"--device={device}", "--quiet", f"--root={lottery_root}"]
    platform = ("import json, torch; d = torch.cuda.is_available(); "
                "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'cuda_available': d, "
                "'device': torch.cuda.get_device_name(0) if d else 'none'}))")
    speed = ["bench/speed.py", "--quick", "--device=cuda"]
    overhead = ["bench/soft_mask_overhead.py", "--devices=cuda", "--repeats", "2"]
    out = [("platform", [PY, "-c", platform], 30)]
    if not dry:
        out.append(("nvidia-smi", ["nvidia-smi"], 20))
    else:   # the GPU run's lottery flags resolve (preset, steps, strategies), without data or a GPU
        gpu_lottery = ["--default_hparams=paper_resnet20_cifar10", "--training_steps=2ep", "--milestone_steps=1ep",
                       "--levels=1", "--device=cpu", "--quiet", f"--root={lottery_root}", "--display_output_location"]
        code = ("import sys; from open_lth_concave import cli; "
                f"rc = [cli.main(['lottery', *{gpu_lottery!r}, *s]) for s in "
                f"{[['--pruning_strategy=sparse_global'], ['--pruning_strategy=concave_log', '--pruning_mode=target', '--pruning_fraction=0.2']]!r}]; "
                "sys.exit(max(rc))")
        out.append(("GPU lottery flags", [PY, "-c", code], 60))
    out += [
        ("CUDA tests", [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"]
         + (["--collect-only"] if dry else ["-x"]), 150),
        ("speed benchmark", flags_check(speed[0], ["--quick", "--device"]) if dry else [PY, *speed], 150),
        ("soft-mask overhead", flags_check(overhead[0], ["--devices", "--repeats"]) if dry else [PY, *overhead], 90),
        ("lottery IMP", [PY, "-m", "open_lth_concave", "lottery", *lottery, *common,
                         "--pruning_strategy=sparse_global"], 90),
        ("lottery concave_log target 20%", [PY, "-m", "open_lth_concave", "lottery", *lottery, *common,
                                            "--pruning_strategy=concave_log", "--pruning_mode=target",
                                            "--pruning_fraction=0.2"], 90),
    ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, every step in its smallest form, no GPU figure")
    parser.add_argument("--out", type=Path, default=None, help="the one file every figure goes to "
                        "(default: gpu_check_<UTC time>.md, or gpu_check_dry_run_<UTC time>.md, in $OUT when "
                        "set: the device machine brings back only what is written there)")
    parser.add_argument("--budget", type=float, default=570.0, help="seconds after which no step is started")
    args = parser.parse_args()
    import torch
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(os.environ.get("OUT") or ".") / f"gpu_check_{'dry_run_' if args.dry_run else ''}{stamp}.md"
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device here: GPU figures need a GPU. Run with --dry-run to check the script on the CPU.",
              file=sys.stderr)
        return 2
    datasets = Path(os.environ.get("OPEN_LTH_DATASETS", Path.home() / "open_lth_datasets"))
    lines = [("# DRY RUN on the CPU: NO GPU FIGURE in this file. GPU figures need a GPU: run "
              "`python bench/gpu_check.py` on a machine with CUDA." if args.dry_run else
              f"# GPU check on {torch.cuda.get_device_name(0)}: every figure of the first GPU session"),
             "", f"- written {stamp} by `{' '.join([Path(PY).name] + sys.argv)}` in {REPO}",
             f"- torch {torch.__version__}, CUDA {torch.version.cuda}, datasets {datasets}", ""]
    began = time.perf_counter()
    summary = []
    env_base = dict(os.environ, OPEN_LTH_NO_DOWNLOAD="1")
    with tempfile.TemporaryDirectory() as scratch:
        for title, cmd, limit in steps(args.dry_run, scratch):
            elapsed = time.perf_counter() - began
            if elapsed > args.budget:
                lines += [f"## {title}", "", f"not run: the {args.budget:.0f} s budget was spent ({elapsed:.0f} s)", ""]
                summary.append((title, "not run (budget)", None))
                continue
            if not args.dry_run and title.startswith("lottery") and not (datasets / "cifar10").exists():
                lines += [f"## {title}", "", f"not run: no CIFAR-10 under {datasets / 'cifar10'} "
                          "(set OPEN_LTH_DATASETS); its GPU figures stay not measured", ""]
                summary.append((title, "not run (no CIFAR-10)", None))
                continue
            print(f"[{elapsed:5.0f} s] {title}: {' '.join(cmd)}", file=sys.stderr, flush=True)
            t = time.perf_counter()
            try:
                proc = subprocess.run(cmd, cwd=REPO, env=env_base, capture_output=True, text=True,
                                      timeout=min(limit, max(5.0, args.budget + 25 - elapsed)))
                status, output = f"exit {proc.returncode}", proc.stdout + ("\n" + proc.stderr if proc.stderr else "")
            except subprocess.TimeoutExpired as e:
                status = f"timed out after {e.timeout:.0f} s"
                output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            seconds = time.perf_counter() - t
            summary.append((title, status, seconds))
            shown = " ".join(cmd) if cmd[1:2] != ["-c"] else f"{Path(PY).name} -c <{title} check>"
            lines += [f"## {title}", "", f"`{shown}`: {status}, {seconds:.1f} s wall", "", "```",
                      output.strip()[-20000:], "```", ""]
            out.write_text("\n".join(lines) + "\n")   # partial results survive a kill
    lines += ["## Summary", "", "| step | status | wall s |", "|---|---|---|"]
    lines += [f"| {t} | {s} | {'-' if sec is None else f'{sec:.1f}'} |" for t, s, sec in summary]
    lines += ["", f"total {time.perf_counter() - began:.0f} s" + (" (dry run on the CPU: no GPU figure)" if args.dry_run else "")]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    failed = [t for t, s, _ in summary if not (s == "exit 0" or s.startswith("not run (no CIFAR"))]
    print(json.dumps({"out": str(out), "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
