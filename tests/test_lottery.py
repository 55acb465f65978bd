"""End-to-end lottery runs on the embedded digits data (seconds each)."""
import json
import os

import pytest
import torch

from open_lth_concave import cli
from open_lth_concave.foundations import io
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.training.metric_logger import MetricLogger

from conftest import Crash, crash_at_training_batch, run_cli

DIGITS = ["--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--quiet"]


def lottery(root, *extra):
    assert cli.main(["lottery", *DIGITS, "--root", str(root), *extra]) == 0
    (exp,) = [p for p in root.iterdir() if p.name.startswith("lottery_")] if len(list(root.iterdir())) == 1 else \
        sorted(root.iterdir(), key=os.path.getmtime)[-1:]
    return exp / "replicate_1"


def test_lottery_layout_and_imp_sparsity(root):
    rep = lottery(root, "--levels=2")
    for level in range(3):
        main = rep / f"level_{level}" / "main"
        for name in ("mask.pth", "sparsity_report.json", "logger", "model_ep0_it0.pth", "model_ep2_it0.pth", "timing.json"):
            assert (main / name).exists(), (level, name)
        assert not (main / "checkpoint.pth").exists()
    assert (rep / "level_0" / "main" / "hparams.log").exists()
    report = json.loads((rep / "report.json").read_text())["levels"]
    # fc.weight (100x10) is ignored; 0.2 of the 64*300 + 300*100 prunable weights go each level.
    prunable = 64 * 300 + 300 * 100
    assert report[0]["unpruned"] == report[0]["total"] == prunable + 1000
    assert report[1]["unpruned"] == pytest.approx(prunable * 0.8 + 1000, abs=2)
    assert report[2]["unpruned"] == pytest.approx(prunable * 0.64 + 1000, abs=4)
    assert report[0]["test_accuracy"] > 0.9
    logger = MetricLogger.load(rep / "level_1" / "main" / "logger")
    assert {n for n, _, _ in logger.rows} >= {"test_loss", "test_accuracy", "test_examples"}


def test_rewinding_restores_initial_values_and_keeps_pruned_zero(root):
    rep = lottery(root, "--levels=1")
    init = io.load_torch(rep / "level_0" / "main" / "model_ep0_it0.pth")
    start1 = io.load_torch(rep / "level_1" / "main" / "model_ep0_it0.pth")
    end1 = io.load_torch(rep / "level_1" / "main" / "model_ep2_it0.pth")
    mask = Mask.load(rep / "level_1" / "main" / "mask.pth")
    for name, m in mask.items():
        assert torch.equal(start1[name], init[name] * m)            # exact initial values of survivors
        assert torch.all(end1[name][m == 0] == 0)                  # pruned stay zero through training
        assert torch.any(end1[name][m == 1] != init[name][m == 1])  # survivors trained
    for name in init:  # biases too
        if name not in mask:
            assert torch.equal(start1[name], init[name])


def test_rewinding_steps_rewind_to_that_step(root):
    rep = lottery(root, "--levels=1", "--rewinding_steps=5it")
    pre_end = io.load_torch(rep / "level_pretrain" / "main" / "model_ep0_it5.pth")
    start1 = io.load_torch(rep / "level_1" / "main" / "model_ep0_it5.pth")
    mask = Mask.load(rep / "level_1" / "main" / "mask.pth")
    for name, m in mask.items():
        assert torch.equal(start1[name], pre_end[name] * m)
    assert (rep / "level_1" / "main" / "model_ep2_it0.pth").exists()


def test_rerun_does_no_work(root, capsys):
    capsys.readouterr()
    rep = lottery(root, "--levels=1")
    assert "nothing to do" not in capsys.readouterr().out
    stamps = {p: p.stat().st_mtime_ns for p in rep.rglob("*.pth")}
    assert cli.main(["lottery", *[a for a in DIGITS if a != "--quiet"], "--root", str(root), "--levels=1"]) == 0
    out = capsys.readouterr().out
    assert "ep 001" not in out  # no training line printed
    assert f"finished: nothing to do (every level was finished before); results in {rep}" in out.splitlines()
    assert stamps == {p: p.stat().st_mtime_ns for p in rep.rglob("*.pth")}
    assert cli.main(["lottery", *DIGITS, "--root", str(root), "--levels=2"]) == 0     # one more level: work to do
    assert "nothing to do" not in capsys.readouterr().out


def test_resume_after_interruption_equals_uninterrupted(root, tmp_path, monkeypatch):
    reference = lottery(tmp_path / "uninterrupted", "--levels=1", "--training_steps=3ep")
    undo = crash_at_training_batch(monkeypatch, 3 * 45 + 60)  # inside level 1, mid-epoch 1
    with pytest.raises(Crash):
        cli.main(["lottery", *DIGITS, "--root", str(root), "--levels=1", "--training_steps=3ep"])
    undo()
    (exp,) = list(root.iterdir())
    assert (exp / "replicate_1" / "level_1" / "main" / "checkpoint.pth").exists()
    resumed = lottery(root, "--levels=1", "--training_steps=3ep")
    for level in (0, 1):
        a = io.load_torch(reference / f"level_{level}" / "main" / "model_ep3_it0.pth")
        b = io.load_torch(resumed / f"level_{level}" / "main" / "model_ep3_it0.pth")
        for k in a:
            assert torch.equal(a[k], b[k]), (level, k)
    assert (reference / "level_1" / "main" / "logger").read_text().count("test_accuracy") == \
        (resumed / "level_1" / "main" / "logger").read_text().count("test_accuracy")


def test_branches_run_on_a_trunk(root):
    lottery(root, "--levels=1")
    base = ["--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--quiet", "--root", str(root)]
    assert cli.main(["lottery_branch", "randomly_prune", *base, "--levels=1", "--seed=3", "--strategy=global"]) == 0
    assert cli.main(["lottery_branch", "randomly_reinitialize", *base, "--levels=0-1"]) == 0
    assert cli.main(["lottery_branch", "retrain", *base, "--levels=1", "--retrain_lr=0.01"]) == 0
    (exp,) = list(root.iterdir())
    level1 = exp / "replicate_1" / "level_1"
    trunk_mask = Mask.load(level1 / "main" / "mask.pth")
    rp = next(level1.glob("lottery_branch_randomly_prune_*"))
    rmask = Mask.load(rp / "mask.pth")
    assert rmask.numpy_counts() == trunk_mask.numpy_counts()             # same number of survivors
    assert any(not torch.equal(rmask[k], trunk_mask[k]) for k in rmask)  # but elsewhere
    assert (rp / "model_ep2_it0.pth").exists()
    assert len(list(exp.glob("replicate_1/level_*/lottery_branch_randomly_reinitialize_*"))) == 2
    assert next(level1.glob("lottery_branch_retrain_*")).joinpath("logger").exists()


def test_mnist_level0_reaches_92_percent(root, mnist_root, monkeypatch):
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(mnist_root))
    assert cli.main(["lottery", "--default_hparams=mnist_lenet_300_100", "--levels=2", "--training_steps=2ep",
                     "--quiet", "--root", str(root)]) == 0
    (exp,) = list(root.iterdir())
    report = json.loads((exp / "replicate_1" / "report.json").read_text())["levels"]
    assert report[0]["test_accuracy"] >= 0.92
    assert report[2]["remaining"] < report[1]["remaining"] < report[0]["remaining"] == 1.0


BAD = [
    (["lottery", "--default_hparams=nope", "--levels=1"], "nope"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--model_name=cifar_resnet_21"], "cifar_resnet_21"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--dataset_name=imagenet9"], "imagenet9"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--pruning_strategy=magic"], "magic"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--training_steps=10"], "'10'"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--lr=0"], "--lr"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--lr=-0.1"], "--lr"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--batch_size=0"], "--batch_size"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--pruning_fraction=1.5"], "--pruning_fraction"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--rewinding_steps=99ep"], "--rewinding_steps"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=-1"], "--levels"),
    (["lottery", "--default_hparams=digits_lenet_300_100"], "--levels"),
    (["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--replicate=0"], "--replicate"),
    (["lottery", "--default_hparams=mnist_lenet_300_100", "--levels=1"], "mnist"),
    (["lottery_branch", "nosuchbranch"], "nosuchbranch"),
    (["train", "--default_hparams=digits_lenet_300_100", "--optimizer_name=rmsprop"], "rmsprop"),
]


@pytest.mark.parametrize("argv,needle", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, needle, root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path / "no_datasets"))
    assert cli.main(argv + ["--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not root.exists()


@pytest.mark.subprocess
@pytest.mark.slow
def test_subprocess_entry_point_help_and_output_location(root):
    r = run_cli("lottery", "--default_hparams=digits_lenet_300_100", "--help")
    assert r.returncode == 0
    assert "(default: digits_lenet_300_100)" in r.stdout and "--pruning_fraction" in r.stdout and "(default: 0.2)" in r.stdout
    r = run_cli("lottery", *DIGITS, "--levels=1", "--display_output_location", root=root)
    assert r.returncode == 0 and r.stdout.strip().startswith(str(root)) and r.stdout.strip().endswith("replicate_1")
    assert not root.exists()
    r = run_cli("lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--lr=abc", root=root)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
