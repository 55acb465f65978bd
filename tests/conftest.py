"""Shared fixtures: every test gets its own results root; downloads are never attempted."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("OPEN_LTH_NO_DOWNLOAD", "1")
# Tiny models on a shared 2-core machine: one thread per process avoids OpenMP threads spinning against
# each other (measured: a digits lottery took 36 s with 2 threads on a busy machine, 5.5 s with 1).
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
REPO = Path(__file__).resolve().parent.parent
MNIST_SHARED = REPO.parent / "shared" / "data" / "mnist10k"


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "results"
    monkeypatch.setenv("OPEN_LTH_ROOT", str(path))
    return path


def run_cli(*args: str, root: Path | None = None, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m open_lth_concave ...` in a subprocess (the real entry point)."""
    full_env = dict(os.environ)
    if root is not None:
        full_env["OPEN_LTH_ROOT"] = str(root)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "open_lth_concave", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO)


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    """A datasets root whose `mnist` folder holds the real MNIST-10k files (skips when absent)."""
    env_root = os.environ.get("OPEN_LTH_DATASETS")
    if env_root and (Path(env_root) / "mnist").exists():
        return Path(env_root)
    if not MNIST_SHARED.exists():
        pytest.skip("MNIST-10k files are not available")
    folder = tmp_path / "datasets" / "mnist"
    folder.mkdir(parents=True)
    for f in MNIST_SHARED.iterdir():
        (folder / f.name).symlink_to(f)
    return folder.parent


class Crash(Exception):
    """Stands for a process dying mid-run (see crash_at_training_batch)."""


def crash_at_training_batch(monkeypatch, number: int, error: type[BaseException] = Crash):
    """Make the `number`-th training batch of this process (counted over all runs) raise `error` (Crash: as
    if the process died there); returns a function that undoes it (so the same test can resume)."""
    from open_lth_concave.datasets import loader
    original = loader.BatchLoader.batches
    calls = {"n": 0}

    def crashing(self, epoch, start_iteration=0):
        for batch in original(self, epoch, start_iteration):
            if self.train:
                calls["n"] += 1
                if calls["n"] == number:
                    raise error()
            yield batch
    monkeypatch.setattr(loader.BatchLoader, "batches", crashing)
    return lambda: monkeypatch.setattr(loader.BatchLoader, "batches", original)


def one_error_line(capsys, *needles: str) -> str:
    """The captured stderr is one line, no traceback, holding every needle."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def wait_for_lock(replicate: Path, proc, timeout: float = 120.0) -> bool:
    """Wait until `proc` holds the experiment lock of `replicate` (False if it ended first)."""
    from open_lth_concave.foundations.lock import ExperimentLock
    lock = ExperimentLock(replicate)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (lock.holder() or {}).get("pid") == proc.pid:
            return True
        time.sleep(0.005)
    return False
