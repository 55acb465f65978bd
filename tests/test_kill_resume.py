"""Kill real `lottery` processes at random moments; restarting must give exactly the uninterrupted result."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from open_lth_concave.foundations import io

from conftest import REPO, wait_for_lock

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]   # kills real processes

STRATEGIES = ["sparse_global", "concave_log"]


def command(strategy):
    return [sys.executable, "-m", "open_lth_concave", "lottery", "--default_hparams=digits_lenet_300_100",
            "--levels=2", "--training_steps=4ep", f"--pruning_strategy={strategy}"]


def run_to_end(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def results(root):
    (exp,) = [p for p in root.iterdir() if p.name.startswith("lottery_")]
    rep = exp / "replicate_1"
    out = {}
    for level in range(3):
        main = rep / f"level_{level}" / "main"
        out[f"mask{level}"] = io.load_torch(main / "mask.pth")
        out[f"model{level}"] = io.load_torch(main / "model_ep4_it0.pth")
        out[f"logger{level}"] = (main / "logger").read_text()
    return out


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith("logger"):
            assert a[key] == b[key], key
        else:
            assert a[key].keys() == b[key].keys()
            for name in a[key]:
                assert torch.equal(a[key][name], b[key][name]), (key, name)


def _registered(strategy):
    from open_lth_concave.plugins import load_core, load_plugins
    from open_lth_concave.pruning.strategy import registry
    load_core()
    load_plugins()
    return strategy in registry


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sigkill_at_ten_random_moments_then_resume(strategy, tmp_path):
    if not _registered(strategy):
        pytest.skip(f"{strategy} not registered")
    cmd = command(strategy)
    ref_env = dict(os.environ, OPEN_LTH_ROOT=str(tmp_path / "reference"))
    where = subprocess.run(cmd + ["--display_output_location"], capture_output=True, text=True, env=ref_env, cwd=REPO)
    assert where.returncode == 0, where.stderr
    replicate = Path(where.stdout.strip().splitlines()[-1]).relative_to(tmp_path / "reference")
    # Time the work from the moment the run holds its experiment lock (imports, parsing and data loading
    # done): kills are timed from that moment too, so a busy machine's slow start-ups cannot shift them.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ref_env, cwd=REPO)
    assert wait_for_lock(tmp_path / "reference" / replicate, proc)
    began = time.time()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    work = max(time.time() - began, 1.0)
    env = dict(os.environ, OPEN_LTH_ROOT=str(tmp_path / "killed"))
    rng = random.Random(strategy)
    kills = 0
    while kills < 10:  # each restart gets a little further before the next SIGKILL
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
        if not wait_for_lock(tmp_path / "killed" / replicate, proc):
            break
        time.sleep(rng.uniform(0.0, 0.09) * work)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills == 10
    run_to_end(cmd, env)
    assert_identical(results(tmp_path / "reference"), results(tmp_path / "killed"))


def test_sigterm_saves_a_checkpoint_and_resumes_identically(tmp_path):
    cmd = command("sparse_global")[:-1] + ["--training_steps=40ep", "--levels=0"]
    env = dict(os.environ, OPEN_LTH_ROOT=str(tmp_path / "a"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    main = None
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until training is under way (first epoch checkpoint)
        found = list((tmp_path / "a").glob("lottery_*/replicate_1/level_0/main/checkpoint.pth"))
        if found:
            main = found[0].parent
            break
        time.sleep(0.05)
    assert main is not None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "checkpoint saved" in err
    assert (main / "checkpoint.pth").exists() and not (main / "model_ep40_it0.pth").exists()
    run_to_end(cmd, env)
    run_to_end(cmd, dict(os.environ, OPEN_LTH_ROOT=str(tmp_path / "b")))
    a = io.load_torch(main / "model_ep40_it0.pth")
    (b_main,) = list((tmp_path / "b").glob("lottery_*/replicate_1/level_0/main"))
    b = io.load_torch(b_main / "model_ep40_it0.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)
