"""The whole command, not just the step: `open_lth train` of LeNet-300-100 on MNIST against a
conventional PyTorch script doing the same job, each a fresh process, run alternately.

    python bench/whole_command.py [--epochs 10] [--rounds 3] [--threads 1] [--before DIR] [--profile]
                                  [--upstream CHECKOUT [--upstream_pythonpath PATH]]

Ours: `python -m open_lth_concave train --default_hparams=mnist_lenet_300_100 --training_steps=<E>ep
--threads=T --quiet` into a fresh results root (startup, dataset preparation, training, an evaluation
at every epoch start and at the end, a checkpoint at every epoch boundary, the logger, the final
model: everything the command does). `--before DIR`: also the same command run from another copy of
the package (e.g. `git archive <commit> | tar -x -C DIR`), to compare versions side by side.
`--upstream CHECKOUT`: also open_lth itself (facebookresearch/open_lth), `python open_lth.py train
--default_hparams=mnist_lenet_300_100 --training_steps=<E>ep` in a copy of the checkout with our
`compat` edits (what it needs to run on current PyTorch and NumPy), a fresh HOME per run (its results
and datasets live there) and OMP_NUM_THREADS=T; the output adds the whole-command ratio upstream / ours.
Reference (written here, `REFERENCE`): the conventional script for the same job: read the IDX
files, a `Dataset` returning one normalized image at a time, `DataLoader`s (shuffle, batch 128 for
training, 1000 for testing), an `nn.Sequential` LeNet-300-100 (same architecture and parameters),
`torch.optim.SGD` (lr 0.1, the preset's), an evaluation over the test set at every epoch start and at
the end, `torch.save` of model and optimizer at every epoch and of the final model, one log line per
epoch. Every command runs once per round, in an order rotated each round; the table reports the
median wall time per command (process start to exit) and ref/ours.
`--profile` runs our command once more in-process under cProfile and prints where its time went.
Data: $OPEN_LTH_DATASETS/mnist (MNIST-10k here).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

REFERENCE = r'''
import gzip, sys, time
from pathlib import Path
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

data, out, epochs, threads = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(1)

def idx(name):
    path = data / name if (data / name).exists() else data / (name + ".gz")
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)

class Mnist(Dataset):
    def __init__(self, prefix):
        self.x, self.y = idx(f"{prefix}-images-idx3-ubyte"), idx(f"{prefix}-labels-idx1-ubyte")
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):   # ToTensor + Normalize, one image at a time
        x = torch.from_numpy(self.x[i].copy()).float().div_(255).sub_(0.1307).div_(0.3081).unsqueeze_(0)
        return x, int(self.y[i])

train = DataLoader(Mnist("train"), batch_size=128, shuffle=True)
test = DataLoader(Mnist("t10k"), batch_size=1000)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()

def evaluate():
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in test:
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    model.train()
    return correct / total

out.mkdir(parents=True, exist_ok=True)
for epoch in range(epochs):
    accuracy = evaluate()
    print(f"epoch {epoch} test accuracy {accuracy:.4f}", flush=True)
    for x, y in train:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1},
               out / "checkpoint.pth")
print(f"final test accuracy {evaluate():.4f}", flush=True)
torch.save(model.state_dict(), out / "model_final.pth")
'''


def ours_command(args, package_dir: Path | None, root: str, epochs: int) -> tuple[list[str], dict]:
    env = dict(os.environ)
    if package_dir is not None:
        env["PYTHONPATH"] = str(package_dir) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "open_lth_concave", "train", "--default_hparams=mnist_lenet_300_100",
           f"--training_steps={epochs}ep", f"--threads={args.threads}", "--quiet", f"--root={root}"]
    return cmd, env


def upstream_copy(checkout: Path, scratch: str) -> Path:
    """A copy of an open_lth checkout with only the `compat` edits (patches/open_lth/compat.edits:
    what it needs to run on current PyTorch and NumPy) applied by our own `upstream patch`; the given
    checkout is left untouched."""
    if not (checkout / "open_lth.py").is_file():
        raise SystemExit(f"--upstream {checkout}: not an open_lth checkout (no open_lth.py in it)")
    copy = Path(scratch) / "open_lth_upstream"
    shutil.copytree(checkout, copy, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    patch = [sys.executable, "-m", "open_lth_concave", "upstream", "patch", str(copy), "--only", "compat"]
    result = subprocess.run(patch, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"--upstream {checkout}: the compat edits do not apply: {result.stderr.strip()[-500:]}")
    return copy


def upstream_command(args, copy: Path, data: Path, run_dir: str, epochs: int) -> tuple[list[str], dict]:
    """open_lth's own `train` for the same job: its results and datasets live under $HOME, so each run
    gets a fresh HOME whose open_lth_datasets/mnist/MNIST/raw/ links to our MNIST files (else it would
    find the previous run's model and skip training). open_lth has no thread flag: OMP_NUM_THREADS
    gives it --threads."""
    raw = Path(run_dir) / "open_lth_datasets" / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in data.iterdir():
        (raw / f.name).symlink_to(f.resolve())
    env = dict(os.environ, HOME=run_dir, OMP_NUM_THREADS=str(args.threads))
    if args.upstream_pythonpath:
        env["PYTHONPATH"] = args.upstream_pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "open_lth.py", "train", "--default_hparams=mnist_lenet_300_100",
           f"--training_steps={epochs}ep"]
    return cmd, env


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def with_bytecode(env: dict, pycache: Path) -> dict:
    """Python's bytecode cache on, kept in `pycache` (an installed package has its .pyc files; a
    PYTHONDONTWRITEBYTECODE=1 environment would otherwise compile every module of every command anew).
    The cache prefix applies to torch's modules too, so every command runs once untimed first."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env | {"PYTHONPYCACHEPREFIX": str(pycache)}


def profile(args) -> None:
    """Our command once in-process under cProfile: where the time goes."""
    import cProfile
    import pstats
    t0 = time.perf_counter()
    from open_lth_concave import cli
    imported = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as root:
        profiler = cProfile.Profile()
        t1 = time.perf_counter()
        profiler.runcall(cli.main, ["train", "--default_hparams=mnist_lenet_300_100", f"--training_steps={args.epochs}ep",
                                    f"--threads={args.threads}", "--quiet", f"--root={root}"])
        run = time.perf_counter() - t1
    stats = pstats.Stats(profiler)
    parts = [("dataset preparation (make_data)", "experiment.py", "make_data"),
             ("model initialization (make_model)", "experiment.py", "make_model"),
             ("optimizer construction (build_optimizer)", "optimizers.py", "build_optimizer"),
             ("training steps: forward", "strategy.py", "forward"),
             ("training steps: loss, backward, SGD (update)", "loop.py", "update"),
             ("training steps: next batch (BatchLoader.batches)", "loader.py", "batches"),
             ("evaluation (evaluate)", "loop.py", "evaluate"),
             ("checkpoints and models (io.save_torch)", "io.py", "save_torch"),
             ("logger, timing, platform records (io.save_json/save_text)", "io.py", "save_json"),
             ("experiment record (record_or_check)", "record.py", "record_or_check")]
    print(f"\nProfile of our command ({args.epochs} epochs), one in-process run under cProfile (which slows "
          "Python-heavy parts):")
    print("| part | seconds |\n|---|---|")
    print(f"| import open_lth_concave.cli (torch included) | {imported:.2f} |")
    print(f"| the command after imports (cli.main) | {run:.2f} |")
    for label, filename, function in parts:
        total = sum(v[3] for k, v in stats.stats.items() if k[0].endswith(filename) and k[2] == function)
        print(f"| {label} | {total:.2f} |")
    dynamo = "imported" if "torch._dynamo" in sys.modules else "not imported"
    print(f"\ntorch._dynamo was {dynamo} by the command.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", type=Path, default=None,
                        help="a folder holding another version's open_lth_concave package, run alongside")
    parser.add_argument("--upstream", type=Path, default=None,
                        help="an open_lth checkout (facebookresearch/open_lth): its `open_lth.py train` of the same job "
                             "runs alongside (on a copy with our compat edits)")
    parser.add_argument("--upstream_pythonpath", default=None,
                        help="prepended to PYTHONPATH for open_lth's processes only (e.g. where its torchvision is)")
    parser.add_argument("--profile", action="store_true", help="also profile our command once (cProfile)")
    args = parser.parse_args()
    data = Path(os.environ.get("OPEN_LTH_DATASETS", Path.home() / "open_lth_datasets")) / "mnist"
    if not data.exists():
        raise SystemExit(f"no MNIST files in {data}: set OPEN_LTH_DATASETS")
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "reference.py"
        script.write_text(REFERENCE)
        commands = {"ours": None, "reference": None}
        if args.before is not None:
            commands["ours (before)"] = None
        upstream = upstream_copy(args.upstream.resolve(), scratch) if args.upstream is not None else None
        if upstream is not None:
            commands["upstream open_lth"] = None
        pycache = Path(scratch) / "pycache"

        def command(name: str, epochs: int) -> tuple[list[str], dict, Path]:
            run_dir = tempfile.mkdtemp(dir=scratch)
            if name == "reference":
                return ([sys.executable, str(script), str(data), run_dir, str(epochs), str(args.threads)],
                        dict(os.environ), REPO)
            if name == "upstream open_lth":
                return (*upstream_command(args, upstream, data, run_dir, epochs), upstream)
            package = args.before if name == "ours (before)" else REPO
            return (*ours_command(args, package, run_dir, epochs), package)

        names = list(commands)
        for name in names:   # untimed: fills the bytecode cache (torch's modules too) and the file cache
            cmd, env, cwd = command(name, 1)
            timed(cmd, with_bytecode(env, pycache), cwd)
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                cmd, env, cwd = command(name, args.epochs)
                wall, used = timed(cmd, with_bytecode(env, pycache), cwd)
                times[name].append(wall)
                cpu[name].append(used)
                print(f"round {r + 1}: {name} {wall:.2f} s ({used:.2f} s CPU)", file=sys.stderr, flush=True)
    ref = statistics.median(times["reference"])
    load = os.getloadavg()
    print(f"Whole command, {args.epochs} epochs of LeNet-300-100 on {data} ({args.threads} thread(s)), "
          f"median of {args.rounds} alternated rounds, wall seconds per fresh process (and its CPU seconds, user + "
          f"system), bytecode cached for every command; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f} on {os.cpu_count()} CPUs:")
    up = statistics.median(times["upstream open_lth"]) if upstream is not None else None
    print("| command | median s | all runs s | median CPU s | reference / this |" + (" upstream / this |" if up else "")
          + "\n|---|---|---|---|---|" + ("---|" if up else ""))
    for name in names:
        med = statistics.median(times[name])
        print(f"| {name} | {med:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} | {statistics.median(cpu[name]):.2f} "
              f"| {ref / med:.2f}x |" + (f" {up / med:.2f}x |" if up else ""))
    if up:
        per_round = [u / o for u, o in zip(times["upstream open_lth"], times["ours"])]
        cpu_ratio = statistics.median(cpu["upstream open_lth"]) / statistics.median(cpu["ours"])
        print(f"\nupstream open_lth / ours, whole command: {up / statistics.median(times['ours']):.2f}x wall (medians); "
              f"per round: {', '.join(f'{r:.2f}' for r in per_round)}; {cpu_ratio:.2f}x in CPU seconds "
              f"(goal: >= 3x). open_lth ran "
              f"`open_lth.py train --default_hparams=mnist_lenet_300_100 --training_steps={args.epochs}ep` with "
              f"OMP_NUM_THREADS={args.threads}, on a copy of {args.upstream} with the compat edits.")
    if args.profile:
        profile(args)


if __name__ == "__main__":
    main()
