"""The concave plug-in through the command line: help, bad input (exit 2, nothing written), end to end."""
from __future__ import annotations

import json

import pytest
import torch

from open_lth_concave import cli
from open_lth_concave.foundations import io

from conftest import run_cli

DIGITS = ["--default_hparams=digits_lenet_300_100", "--quiet"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_help_lists_the_strategy_hyperparameters_with_defaults():
    result = run_cli("lottery", "--default_hparams=digits_lenet_300_100", "--pruning_strategy=concave_log", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for expected in ("Pruning Hyperparameters (concave_log)", "--epsilon FLOAT", "(default: 0.1)",
                     "--regularization_lambda FLOAT", "(default: 1e-06)", "--threshold FLOAT", "0.05, a small alpha",
                     "--mask_optimizer STR", "One of: auto, paper, scaled", "(default: auto)",
                     "--initial_mask_value FLOAT", "(default: 0.5)", "--mask_lr FLOAT", "--mask_momentum FLOAT",
                     "--mask_weight_decay FLOAT", "--pruning_mode STR", "One of: auto, threshold, target, fraction",
                     "--pruning_fraction FLOAT", "(default: 0.2)", "--pruning_layers_to_ignore STR", "(default: fc.weight)"):
        assert expected in text, expected
    l1 = run_cli("lottery", "--default_hparams=digits_lenet_300_100", "--pruning_strategy=concave_l1", "--help")
    assert "(default: 3e-06)" in l1.stdout and "--epsilon" not in l1.stdout


BAD = [
    (["--pruning_strategy=concave_log", "--regularization_lambda=-1e-6"], "--regularization_lambda -1e-06: must be >= 0"),
    (["--pruning_strategy=concave_log", "--epsilon=0"], "--epsilon 0.0: must be > 0"),
    (["--pruning_strategy=concave_log", "--epsilon=-1"], "--epsilon -1.0: must be > 0"),
    (["--pruning_strategy=concave_l1", "--threshold=0"], "--threshold 0.0: must be in (0, 1)"),
    (["--pruning_strategy=concave_l1", "--threshold=1"], "--threshold 1.0: must be in (0, 1)"),
    (["--pruning_strategy=concave_log", "--initial_mask_value=0"], "--initial_mask_value 0.0: must be in (0, 1]"),
    (["--pruning_strategy=concave_log", "--initial_mask_value=1.5"], "--initial_mask_value 1.5: must be in (0, 1]"),
    (["--pruning_strategy=concave_lq", "--q=0"], "--q 0.0: must be in (0, 1]"),
    (["--pruning_strategy=concave_lq", "--q=1.5"], "--q 1.5: must be in (0, 1]"),
    (["--pruning_strategy=concave_log", "--pruning_mode=soft"], "--pruning_mode"),
    (["--pruning_strategy=concave_foo"], "unknown regularizer 'foo'; valid: l1, log"),
    (["--pruning_strategy=nope"], "unknown pruning strategy 'nope'; valid:"),
    (["--pruning_strategy=sigmoid_mask", "--initial_mask_value=1"], "--initial_mask_value 1.0: must be in (0, 1)"),
    (["--pruning_strategy=sigmoid_mask", "--beta_final=0.5"], "--beta_final 0.5: must be >= 1"),
]


@pytest.mark.parametrize("flags,message", BAD, ids=[" ".join(f) for f, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, flags, message):
    root = tmp_path / "results"
    code = cli.main(["lottery", *DIGITS, "--levels=1", "--root", str(root), *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not root.exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_bad_input_through_the_real_entry_point(tmp_path):
    root = tmp_path / "results"
    result = run_cli("lottery", *DIGITS, "--levels=1", "--pruning_strategy=concave_log", "--threshold=2", root=root)
    assert result.returncode == 2
    assert result.stderr.strip() == "open_lth lottery: error: invalid --threshold 2.0: must be in (0, 1)"
    assert not root.exists()


def rows(rep):
    return json.loads((rep / "report.json").read_text())["levels"]


def test_concave_log_end_to_end_removes_weights_at_every_level(tmp_path):
    """With --mask_optimizer=scaled (100 x lr, no mask decay, alpha 0.4: the setting that moves masks in
    a short digits round) every level removes weights; the paper default's short-round warning is
    tested in test_concave_fidelity.py."""
    root = tmp_path / "results"
    assert cli.main(["lottery", *DIGITS, "--pruning_strategy=concave_log", "--levels=2", "--training_steps=3ep",
                     "--mask_optimizer=scaled", "--pruning_mode=threshold", "--root", str(root)]) == 0
    (rep,) = list(root.glob("lottery_*/replicate_1"))
    report = rows(rep)
    assert report[0]["unpruned"] == report[0]["total"] == 50200
    assert report[0]["unpruned"] > report[1]["unpruned"] > report[2]["unpruned"] > 1000   # removed every level
    for level in (1, 2):
        pruning = rep / f"level_{level}" / "pruning"
        relaxed = io.load_torch(pruning / "relaxed_mask.pth")
        mask = io.load_torch(rep / f"level_{level}" / "main" / "mask.pth")
        assert set(relaxed) == {"fc_layers.0.weight", "fc_layers.1.weight"}
        for name, values in relaxed.items():
            assert float(values.min()) >= 0 and float(values.max()) <= 1
            assert bool((values[mask[name] == 0] == 0).all()) and bool((values[mask[name] == 1] >= 0.4).all())
        metrics = json.loads((pruning / "search_metrics.json").read_text())
        assert metrics["remaining"] == report[level]["unpruned"] and metrics["removed"] > 0
        assert 0 < metrics["test_accuracy"] <= 1 and metrics["train_loss"] > 0 and metrics["regularizer_value"] > 0
        assert metrics["search_seconds"] > 0 and report[level]["pruning_seconds"] >= metrics["search_seconds"]
        assert report[level]["test_accuracy"] > 0.8 and report[level]["ticket_seconds"] > 0
        assert (pruning / "search" / "model_ep3_it0.pth").exists()


def test_train_final_ticket_only_searches_every_level_trains_only_the_last(tmp_path):
    root = tmp_path / "results"
    assert cli.main(["lottery", *DIGITS, "--pruning_strategy=concave_l1", "--levels=2", "--training_steps=2ep",
                     "--train_final_ticket_only", "--root", str(root)]) == 0
    (rep,) = list(root.glob("lottery_*/replicate_1"))
    report = rows(rep)
    assert report[1]["ticket_seconds"] is None and report[1]["test_accuracy"] is None
    assert not (rep / "level_1" / "main" / "model_ep2_it0.pth").exists()
    assert (rep / "level_1" / "pruning" / "search_metrics.json").exists()
    assert report[2]["ticket_seconds"] > 0 and report[2]["test_accuracy"] > 0.5
    assert report[1]["pruning_seconds"] > 0 and report[2]["pruning_seconds"] > 0
    assert (rep / "level_2" / "main" / "model_ep2_it0.pth").exists()


def test_hard_ablation_through_the_cli_removes_the_fraction(tmp_path):
    root = tmp_path / "results"
    assert cli.main(["lottery", *DIGITS, "--pruning_strategy=concave_log", "--pruning_mode=fraction",
                     "--pruning_fraction=0.25", "--levels=1", "--training_steps=1ep", "--train_final_ticket_only",
                     "--root", str(root)]) == 0
    (rep,) = list(root.glob("lottery_*/replicate_1"))
    prunable = 64 * 300 + 300 * 100
    assert rows(rep)[1]["unpruned"] == 50200 - int(torch.tensor(0.25 * prunable).ceil())
