"""Sharing a finished dense level 0 between strategies: `lottery` does it as `compare` does, always under the
lock of the experiment it writes into, so a running (or paused) process's files are never touched."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from open_lth_concave import cli, jobs
from open_lth_concave.foundations import io

from conftest import REPO

DIGITS = ["--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--levels=1"]
SECOND = ["--pruning_fraction=0.5"]          # another strategy setting: another experiment, the same level 0


def _replicate(root: Path, argv: list[str]) -> Path:
    runner = jobs.build("lottery", [*argv, "--root", str(root)]).runner
    return runner.replicate_dir


def _results(replicate: Path) -> list[dict]:
    """report.json's numbers without the times (which differ from run to run)."""
    rows = io.load_json(replicate / "report.json")["levels"]
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows]


def _final_states(replicate: Path) -> dict:
    return {p.relative_to(replicate): io.load_torch(p) for p in sorted(replicate.glob("level_*/main/model_ep2_it0.pth"))}


def _assert_same_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        assert a[key].keys() == b[key].keys() and all(torch.equal(a[key][n], b[key][n]) for n in a[key])


@pytest.mark.parametrize("SECOND", [SECOND, ["--pruning_strategy=concave_log", "--mask_optimizer=scaled"]],
                         ids=["sparse_global", "concave_log"])
def test_lottery_with_a_second_strategy_reuses_the_finished_level0(tmp_path, capsys, SECOND):
    root = tmp_path / "root"
    assert cli.main(["lottery", *DIGITS, "--root", str(root)]) == 0
    capsys.readouterr()
    assert cli.main(["lottery", *DIGITS, *SECOND, "--root", str(root)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "cannot use" not in captured.err                          # the shared level 0 is sound as it is
    first, second = _replicate(root, DIGITS), _replicate(root, DIGITS + SECOND)
    assert f"dense level 0 shared from {first / 'level_0' / 'main'}" in out
    assert "level 0\tep" not in out and "level 1\tep" in out         # level 0 not trained a second time
    for name in ("model_ep2_it0.pth", "model_ep0_it0.pth", "logger", "mask.pth", "pruning.json"):  # the same files (hard links)
        assert os.path.samefile(first / "level_0" / "main" / name, second / "level_0" / "main" / name)
    alone = tmp_path / "alone"                                       # the second strategy on its own
    assert cli.main(["lottery", *DIGITS, *SECOND, "--root", str(alone), "--quiet"]) == 0
    assert _results(second) == _results(_replicate(alone, DIGITS + SECOND))
    _assert_same_states(_final_states(second), _final_states(_replicate(alone, DIGITS + SECOND)))


PAUSING = """
import os, signal, sys
from open_lth_concave.datasets import loader
from open_lth_concave import cli
original, calls = loader.BatchLoader.batches, {"n": 0}
def batches(self, epoch, start_iteration=0):
    for batch in original(self, epoch, start_iteration):
        if self.train:
            calls["n"] += 1
            if calls["n"] == 5:                      # mid level 0: pause this process as a user's Ctrl-Z would
                os.kill(os.getpid(), signal.SIGSTOP)
        yield batch
loader.BatchLoader.batches = batches
sys.exit(cli.main(sys.argv[1:]))
"""


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _snapshot(folder: Path) -> dict:
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.rglob("*"))}


@pytest.mark.subprocess
@pytest.mark.slow
def test_compare_waits_for_a_paused_lottery_instead_of_replacing_its_level0(tmp_path):
    """A lottery of the second strategy is paused (SIGSTOP) in level 0 while `compare` trains the first strategy
    and then wants to share its level 0 into the paused one's folder: compare waits for the lock, nothing of
    the paused run changes while it is paused; resumed, both finish with the results of a sequential run."""
    root = tmp_path / "root"
    env = dict(os.environ, OPEN_LTH_ROOT=str(root))
    paused = subprocess.Popen([sys.executable, "-c", PAUSING, "lottery", *DIGITS, *SECOND, "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    compare = None
    try:
        deadline = time.time() + 120
        while _state(paused.pid) != "T":
            assert paused.poll() is None and time.time() < deadline, paused.stdout.read()
            time.sleep(0.05)
        folder = _replicate(root, DIGITS + SECOND)
        assert (folder / "level_0" / "main" / "model_ep0_it0.pth").exists()
        assert not (folder / "level_0" / "main" / "model_ep2_it0.pth").exists()   # paused inside level 0
        before = _snapshot(folder.parent)
        compare = subprocess.Popen([sys.executable, "-m", "open_lth_concave", "compare", *DIGITS, "--quiet",
                                    "--strategies=sparse_global,sparse_global:pruning_fraction=0.5"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(compare.stdout), daemon=True)
        reader.start()
        while not any("waiting for it to finish" in line for line in lines):
            assert compare.poll() is None and time.time() < deadline + 240, "".join(lines)
            time.sleep(0.1)
        time.sleep(1.0)
        assert _snapshot(folder.parent) == before                   # nothing of the paused run was touched
        assert _state(paused.pid) == "T"
        paused.send_signal(signal.SIGCONT)
        assert paused.wait(timeout=240) == 0, paused.stdout.read()
        assert compare.wait(timeout=240) == 0, "".join(lines)
        reader.join(timeout=10)
    finally:
        for proc in (paused, compare):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
    sequential = tmp_path / "sequential"
    assert cli.main(["lottery", *DIGITS, "--root", str(sequential), "--quiet"]) == 0
    assert cli.main(["lottery", *DIGITS, *SECOND, "--root", str(sequential), "--quiet"]) == 0
    for argv in (DIGITS, DIGITS + SECOND):
        assert _results(_replicate(root, argv)) == _results(_replicate(sequential, argv))
        _assert_same_states(_final_states(_replicate(root, argv)), _final_states(_replicate(sequential, argv)))
