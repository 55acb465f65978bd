"""bench/gpu_check.py must not rot before someone has a GPU: its dry run goes through every step on the CPU."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO

pytestmark = pytest.mark.subprocess   # runs bench/gpu_check.py

STEPS = ["platform", "GPU lottery flags", "CUDA tests", "speed benchmark", "soft-mask overhead", "lottery IMP",
         "lottery concave_log target 20%"]


@pytest.mark.slow
def test_dry_run_goes_through_every_step_and_says_it_holds_no_gpu_figure(tmp_path):
    out = tmp_path / "check.md"
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", f"--out={out}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"out": str(out), "failed": []}
    text = out.read_text()
    first = text.splitlines()[0]
    assert "DRY RUN" in first and "NO GPU FIGURE" in first and "GPU figures need a GPU" in first
    summary = text.split("## Summary")[1]
    for step in STEPS:
        assert f"| {step} | exit 0 |" in summary, step
    # the tiny lotteries ran and reported both levels; the benchmarks know the GPU run's flags
    for strategy_section in text.split("## lottery ")[1:]:
        assert "Level 0: remaining weights 100.00%" in strategy_section and "Level 1: remaining weights" in strategy_section
    assert text.count("- missing: none") == 2
    assert "tests/test_cuda.py::test_lottery_on_cuda" in text      # the CUDA tests were collected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_a_gpu_the_real_run_refuses_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", f"--out={tmp_path / 'x.md'}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "GPU figures need a GPU" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.md").exists()
