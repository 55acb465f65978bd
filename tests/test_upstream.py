"""`open_lth upstream`: the edits of patches/open_lth/ on an open_lth checkout, and our strategies inside it.

CI cannot download open_lth, so these tests use tests/upstream_standin/, a miniature written from the
contract with open_lth's module layout, the signatures our plug-in uses, the lines the edits expect and
open_lth's defects that the compatibility edits fix. The same checks against a real checkout are in the
README (section "Inside open_lth itself") with what they measured.
"""
from __future__ import annotations

import gzip
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from open_lth_concave.cli import main as cli_main
from open_lth_concave.upstream import edits as E

STANDIN = REPO / "tests" / "upstream_standin"
PLUGIN = "open_lth_concave.upstream.plugin:register"
FLAGS = ["--default_hparams=mnist_lenet_16", "--training_steps=2ep", "--data_order_seed=0"]


# ---- helpers ---------------------------------------------------------------------------------------------------
def checkout(tmp_path: Path, name: str = "open_lth") -> Path:
    dest = tmp_path / name
    shutil.copytree(STANDIN, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def home_with_mnist(tmp_path: Path) -> Path:
    """A HOME whose open_lth_datasets/mnist/MNIST/raw holds 512 train / 128 test digits as MNIST IDX files
    (scikit-learn's 8x8 digits, upscaled to 28x28): fewer than MNIST's constants, as MNIST-10k is."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.pad((digits.images * 16).clip(0, 255).astype(np.uint8).repeat(3, 1).repeat(3, 2), ((0, 0), (2, 2), (2, 2)))
    labels = digits.target.astype(np.uint8)
    home = tmp_path / "home"
    raw = home / "open_lth_datasets" / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)

    def write(name: str, array: np.ndarray, magic: int) -> None:
        header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
        with gzip.open(raw / f"{name}.gz", "wb") as fp:
            fp.write(header + array.tobytes())
    write("train-images-idx3-ubyte", images[:512], 0x803)
    write("train-labels-idx1-ubyte", labels[:512], 0x801)
    write("t10k-images-idx3-ubyte", images[512:640], 0x803)
    write("t10k-labels-idx1-ubyte", labels[512:640], 0x801)
    return home


def run_checkout(path: Path, home: Path, *args: str, seed: int = 0) -> subprocess.CompletedProcess:
    """The checkout's own open_lth.py (initial weights seeded: open_lth has no seed flag)."""
    code = ("import runpy, sys, torch; torch.manual_seed(int(sys.argv[1])); root = sys.argv[2]; "
            "sys.path.insert(0, root); sys.argv = [root + '/open_lth.py'] + sys.argv[3:]; "
            "runpy.run_path(root + '/open_lth.py', run_name='__main__')")
    env = dict(os.environ, HOME=str(home), OPEN_LTH_PLUGINS=PLUGIN, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-c", code, str(seed), str(path), *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=path)


def core_hashname(*flags: str) -> str:
    """The experiment name our core gives the same lottery flags."""
    from open_lth_concave import jobs
    from open_lth_concave.plugins import load_core, load_plugins
    load_core()
    load_plugins()
    return jobs.describe("lottery", list(flags)).hashname


def experiment(home: Path) -> Path:
    found = list((home / "open_lth_data").glob("lottery_*"))
    assert len(found) == 1, found
    return found[0]


def unpruned(exp: Path, level: int) -> float:
    import json
    return json.loads((exp / "replicate_1" / f"level_{level}" / "main" / "sparsity_report.json").read_text())["unpruned"]


# ---- the edits -------------------------------------------------------------------------------------------------
def test_each_edit_matches_one_line_of_upstream_text():
    """Our edits carry no more of upstream's text than the line each must find."""
    edits = E.load()
    assert {e.group for e in edits} == set(E.GROUPS) and len(edits) >= 10
    for e in edits:
        assert e.expected.count("\n") <= 1, (e.file, e.expected)
        assert e.why, e.file


def test_patch_is_idempotent_checked_and_reverted_byte_for_byte(tmp_path, capsys):
    path = checkout(tmp_path)
    before = tree(path)
    assert cli_main(["upstream", "patch", str(path), "--check"]) == 1
    assert f"not applied (0 of {len(E.load())} edits)" in capsys.readouterr().out
    assert cli_main(["upstream", "patch", str(path)]) == 0
    patched = tree(path)
    changed = sorted(k for k in before if before[k] != patched[k])
    assert changed == sorted({e.file for e in E.load()})
    assert b"class Model(torch.nn.Module, abc.ABC)" in patched["models/base.py"]
    capsys.readouterr()
    assert cli_main(["upstream", "patch", str(path), "--check"]) == 0
    assert f"applied ({len(E.load())} of {len(E.load())} edits)" in capsys.readouterr().out
    assert cli_main(["upstream", "patch", str(path)]) == 0          # again: nothing to do
    assert tree(path) == patched
    assert cli_main(["upstream", "patch", str(path), "--revert"]) == 0
    assert tree(path) == before
    assert cli_main(["upstream", "patch", str(path), "--revert"]) == 0   # nothing left to undo
    assert tree(path) == before


def test_only_one_group(tmp_path, capsys):
    path = checkout(tmp_path)
    before = tree(path)
    assert cli_main(["upstream", "patch", str(path), "--only", "compat"]) == 0
    compat = [e for e in E.load() if e.group == "compat"]
    capsys.readouterr()
    assert cli_main(["upstream", "patch", str(path), "--check"]) == 1
    assert f"partly applied ({len(compat)} of {len(E.load())} edits)" in capsys.readouterr().out
    assert b"np.prod(" in (path / "training" / "optimizers.py").read_bytes()
    assert (path / "pruning" / "registry.py").read_bytes() == before["pruning/registry.py"]
    assert cli_main(["upstream", "patch", str(path), "--revert"]) == 0
    assert tree(path) == before


@pytest.mark.parametrize("command", [["patch"], ["patch", "--revert"], ["patch", "--check"], ["run"]])
def test_a_fork_that_changed_a_patched_line_is_refused_and_nothing_changes(tmp_path, capsys, command):
    path = checkout(tmp_path)
    train = path / "training" / "train.py"
    train.write_text(train.read_text().replace("step_optimizer.step()", "step_optimizer.step(closure=None)"))
    if command == ["patch", "--revert"]:
        E.write(path, {f: t for f, t in E.patched_texts(path, [e for e in E.load() if e.file != "training/train.py"]).items()})
    before = tree(path)
    argv = ["upstream", command[0], str(path), *command[1:]] + (["--", "lottery", "--help"] if command == ["run"] else [])
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    message = (captured.err + captured.out).strip().splitlines()[-1]
    assert str(train) in message and "`step_optimizer.step()`" in message and "nothing was changed" in message
    assert tree(path) == before


def test_not_a_checkout_is_one_line(tmp_path, capsys):
    assert cli_main(["upstream", "patch", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an open_lth checkout" in err and str(tmp_path) in err


# ---- inside the (stand-in) checkout -------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_the_compat_edits_are_what_lets_it_import(tmp_path):
    """The stand-in keeps open_lth's base-class order: unpatched it does not import on current PyTorch."""
    path, home = checkout(tmp_path), tmp_path / "home"
    home.mkdir()
    result = run_checkout(path, home, "lottery", *FLAGS, "--levels=0", "--display_output_location")
    assert result.returncode != 0 and "consistent method resolution" in result.stderr
    E.write(path, E.patched_texts(path, E.load(("compat",))))
    result = run_checkout(path, home, "lottery", *FLAGS, "--levels=0", "--display_output_location")
    assert result.returncode == 0, result.stderr


@pytest.mark.subprocess
@pytest.mark.slow
def test_concave_lottery_inside_the_patched_checkout(tmp_path, capsys):
    """Upstream's own lottery runs concave_log (hard ablation: exactly 30% of the survivors per level),
    its mask trained through upstream's loop and the hooks; same folder name as our core; our summary
    reads it."""
    path, home = checkout(tmp_path), home_with_mnist(tmp_path)
    assert cli_main(["upstream", "patch", str(path)]) == 0
    flags = [*FLAGS, "--pruning_strategy=concave_log", "--pruning_mode=fraction", "--pruning_fraction=0.3"]
    result = run_checkout(path, home, "lottery", *flags, "--levels=2", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    exp = experiment(home)
    assert exp.name == core_hashname(*flags, "--levels=2")
    total, ignored = 784 * 16 + 16 * 10, 16 * 10                     # fc.weight is ignored (the model's default)
    level1 = total - math.ceil(0.3 * (total - ignored))
    assert unpruned(exp, 0) == total and unpruned(exp, 1) == level1
    assert unpruned(exp, 2) == level1 - math.ceil(0.3 * (level1 - ignored))
    relaxed = torch.load(exp / "replicate_1" / "level_1" / "pruning" / "relaxed_mask.pth", weights_only=True)
    values = relaxed["fc_layers.0.weight"][relaxed["fc_layers.0.weight"] > 0]
    assert values.std() > 1e-4 and set(relaxed) == {"fc_layers.0.weight"}     # the masks were trained
    saved = torch.load(exp / "replicate_1" / "level_2" / "pruning" / "search" / "model_ep2_it0.pth", weights_only=True)
    assert "_extra_state" in saved and "relaxed_mask" in saved["_extra_state"]   # the search's state travels with it
    checkpoints = sorted(exp.rglob("checkpoint.pth"))
    assert len(checkpoints) == 5                         # level 0, and a search and a ticket per level
    for path_ in checkpoints:                            # an interrupted run can resume under safe loading
        assert type(torch.load(path_, weights_only=True)["ep"]) is int
    capsys.readouterr()
    assert cli_main(["summary", str(exp)]) == 0
    out = capsys.readouterr().out
    assert f"{int(level1)} / {total}" in out and "fraction mode" in out


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_target_search_checkpoint_loads_under_safe_loading(tmp_path):
    """open_lth counts steps with NumPy integers; nothing NumPy may reach the search's checkpointed state."""
    path, home = checkout(tmp_path), home_with_mnist(tmp_path)
    E.write(path, E.patched_texts(path, E.load()))
    result = run_checkout(path, home, "lottery", *FLAGS, "--levels=1", "--quiet", "--pruning_strategy=concave_log",
                          "--pruning_mode=target", "--pruning_fraction=0.2")
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(experiment(home) / "replicate_1" / "level_1" / "pruning" / "search" / "checkpoint.pth",
                       weights_only=True)
    target = state["model_state_dict"]["_extra_state"]["target"]
    assert target["steps"] == 8 and type(target["pressure"]) is float and type(target["drift"]) is float


@pytest.mark.subprocess
@pytest.mark.slow
def test_upstream_imp_gives_the_same_masks_with_and_without_the_hooks(tmp_path):
    homes, masks = [], []
    for group in (("compat",), E.GROUPS):
        path, home = checkout(tmp_path, "-".join(group)), home_with_mnist(tmp_path / "-".join(group))
        E.write(path, E.patched_texts(path, E.load(group)))
        result = run_checkout(path, home, "lottery", *FLAGS, "--levels=1", "--quiet")
        assert result.returncode == 0, result.stderr[-3000:]
        masks.append(torch.load(experiment(home) / "replicate_1" / "level_1" / "main" / "mask.pth", weights_only=True))
        homes.append(experiment(home).name)
    assert homes[0] == homes[1]
    assert masks[0].keys() == masks[1].keys() and all(torch.equal(masks[0][k], masks[1][k]) for k in masks[0])
    assert 0 < sum(int(v.sum()) for v in masks[0].values()) < sum(v.numel() for v in masks[0].values())


@pytest.mark.subprocess
def test_run_in_memory_changes_no_file(tmp_path):
    path, home = checkout(tmp_path), tmp_path / "home"
    home.mkdir()
    before = tree(path)
    flags = [*FLAGS, "--pruning_strategy=concave_l1", "--levels=1"]
    env = dict(os.environ, HOME=str(home))
    env.pop("OPEN_LTH_PLUGINS", None)
    result = subprocess.run([sys.executable, "-m", "open_lth_concave", "upstream", "run", str(path), "--", "lottery",
                             *flags, "--display_output_location"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert core_hashname(*flags) in result.stdout
    assert tree(path) == before                                  # no edit written, no bytecode cached
