"""--training_strategy: `train` applies it with the strategy's own flags (which name the experiment);
lottery jobs, whose tickets and pretraining train with the standard strategy, refuse any other."""
from __future__ import annotations

import contextlib
import io as stdio

import pytest

from open_lth_concave import cli
from open_lth_concave.foundations import io

DIGITS = ["--default_hparams=digits_lenet_300_100", "--quiet"]
SOFT = ["--training_strategy=soft_mask"]


def _stdout(*argv: str) -> tuple[int, str]:
    buffer = stdio.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(list(argv))
    return code, buffer.getvalue()


def location(root, *argv: str) -> str:
    code, out = _stdout("train", *DIGITS, "--root", str(root), "--display_output_location", *argv)
    assert code == 0
    return out.strip()


def test_train_help_shows_the_strategys_own_flags():
    for argv, present in ((SOFT, True), ([], False)):
        buffer = stdio.StringIO()
        with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
            cli.main(["train", *DIGITS, *argv, "--help"])
        text = buffer.getvalue()
        for flag in ("--regularization_lambda", "--mask_lr", "--initial_mask_value"):
            assert (flag in text) == present, (argv, flag)


def test_the_strategys_flags_name_the_experiment_and_standard_names_are_unchanged(root):
    plain = location(root)
    assert location(root, "--training_strategy=standard") == plain
    soft = location(root, *SOFT)
    assert soft != plain
    assert location(root, *SOFT, "--regularization_lambda=0.5") not in (soft, plain)
    assert location(root, *SOFT, "--regularization_lambda=0.5") == location(root, *SOFT, "--regularization_lambda=0.5")


def _relaxed_mask_mean(root, *flags: str) -> float:
    argv = ["train", *DIGITS, *SOFT, "--training_steps=10it", "--mask_lr=5", "--root", str(root), *flags]
    assert cli.main(argv) == 0
    main = location(root, *SOFT, "--training_steps=10it", "--mask_lr=5", *flags)
    state = io.load_torch(f"{main}/strategy_final.pth")
    masks = state["relaxed_mask"]
    return float(sum(m.sum() for m in masks.values()) / sum(m.numel() for m in masks.values()))


def test_train_applies_the_strategy_with_its_flags(root):
    free = _relaxed_mask_mean(root, "--regularization_lambda=0")
    penalized = _relaxed_mask_mean(root, "--regularization_lambda=0.01")
    assert 0.3 < free < 0.7                  # the relaxed masks trained from 0.5 (soft_mask ran)
    assert penalized < free - 0.02           # the penalty's lambda reached the training step


@pytest.mark.parametrize("argv", [
    ["lottery", "--levels=1", *SOFT],
    ["lottery", "--levels=1", "--rewinding_steps=2it", *SOFT],
    ["lottery", "--levels=1", "--pretrain", "--pretrain_training_steps=1ep", "--pretrain_training_strategy=soft_mask"],
    ["compare", "--levels=1", "--strategies=sparse_global", *SOFT],
    ["lottery_branch", "retrain", "--levels=0", "--retrain_training_strategy=soft_mask"],
])
def test_lottery_jobs_refuse_another_training_strategy_with_one_line(root, capsys, argv):
    if argv[0] == "lottery_branch":   # a trunk to branch from
        assert cli.main(["lottery", *DIGITS, "--training_steps=1ep", "--levels=0", "--root", str(root)]) == 0
        capsys.readouterr()
    before = sorted(root.rglob("*")) if root.exists() else []
    args = [argv[0], *argv[1:2]] if argv[0] == "lottery_branch" else [argv[0]]
    rest = argv[2:] if argv[0] == "lottery_branch" else argv[1:]
    assert cli.main([*args, *DIGITS, "--training_steps=1ep", "--root", str(root), *rest]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training_strategy soft_mask" in err and "standard" in err
    assert (sorted(root.rglob("*")) if root.exists() else []) == before
