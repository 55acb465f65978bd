"""Damaged files are detected, named, and recomputed from the last good state; NaN stops the run."""

import pytest
import torch

from open_lth_concave import cli
from open_lth_concave.foundations import io

from conftest import crash_at_training_batch

ARGS = ["lottery", "--default_hparams=digits_lenet_300_100", "--training_steps=3ep", "--quiet", "--levels=1"]


def run(root):
    assert cli.main(ARGS + ["--root", str(root)]) == 0
    (exp,) = list(root.iterdir())
    return exp / "replicate_1"


def final_state(rep, level=1):
    return io.load_torch(rep / f"level_{level}" / "main" / "model_ep3_it0.pth")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return final_state(run(tmp_path_factory.mktemp("reference")))


def assert_same(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_truncated_final_model_is_retrained(root, reference, capsys):
    rep = run(root)
    path = rep / "level_1" / "main" / "model_ep3_it0.pth"
    path.write_bytes(path.read_bytes()[:100])
    run(root)
    assert "model_ep3_it0.pth" in capsys.readouterr().err
    assert_same(final_state(rep), reference)


def test_truncated_mask_is_recomputed(root, reference, capsys):
    rep = run(root)
    mask_file = rep / "level_1" / "main" / "mask.pth"
    good = mask_file.read_bytes()
    mask_file.write_bytes(good[: len(good) // 2])
    (rep / "level_1" / "main" / "model_ep3_it0.pth").unlink()  # the ticket must be retrained on the mask
    run(root)
    assert "mask.pth" in capsys.readouterr().err
    assert mask_file.read_bytes() == good
    assert_same(final_state(rep), reference)


def test_corrupted_checkpoint_restarts_the_run(root, reference, capsys, monkeypatch):
    undo = crash_at_training_batch(monkeypatch, 3 * 45 + 70, KeyboardInterrupt)
    assert cli.main(ARGS + ["--root", str(root)]) == 130  # interrupted mid-level-1
    undo()
    (exp,) = list(root.iterdir())
    checkpoint = exp / "replicate_1" / "level_1" / "main" / "checkpoint.pth"
    assert checkpoint.exists()
    checkpoint.write_bytes(b"garbage" * 10)
    rep = run(root)
    assert "checkpoint.pth" in capsys.readouterr().err
    assert_same(final_state(rep), reference)


def test_nan_loss_stops_with_level_phase_and_step(root, capsys):
    code = cli.main(["lottery", "--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--quiet",
                     "--levels=1", "--lr=1e30", "--root", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and "level 0" in err and "epoch" in err and ("nan" in err or "inf" in err)
    (exp,) = list(root.iterdir())
    main = exp / "replicate_1" / "level_0" / "main"
    assert not (main / "model_ep2_it0.pth").exists()   # nothing saved as final
