"""Every user error is one line on stderr and exit code 2, never a traceback: one base class
(foundations/errors.UserError) that the command line catches."""
from __future__ import annotations

import io as _io
import tarfile
from pathlib import Path

import pytest

from open_lth_concave import cli, jobs
from open_lth_concave.foundations.errors import UserError

from conftest import one_error_line

DIGITS = ["--default_hparams=digits_lenet_300_100", "--training_steps=1ep", "--quiet"]


def test_user_error_classes_share_the_base_and_exit_code():
    from open_lth_concave.datasets.base import DatasetMissingError
    from open_lth_concave.datasets.cifar import UnsafePickleError
    from open_lth_concave.datasets.download import UnsafeArchiveError
    from open_lth_concave.foundations.errors import MissingFileError
    from open_lth_concave.foundations.hparams import HparamError
    from open_lth_concave.foundations.io import CorruptFileError
    from open_lth_concave.foundations.lock import LockHeldError
    from open_lth_concave.foundations.registry import UnknownNameError
    from open_lth_concave.foundations.step import StepError
    from open_lth_concave.pruning.mask import MaskShapeError
    for cls in (jobs.UsageError, HparamError, UnknownNameError, StepError, DatasetMissingError, CorruptFileError,
                MaskShapeError, UnsafeArchiveError, UnsafePickleError, LockHeldError, MissingFileError):
        assert issubclass(cls, UserError) and cls.exit_code == 2, cls
    assert issubclass(MissingFileError, FileNotFoundError)  # older `except FileNotFoundError` still apply
    from open_lth_concave.training.loop import TrainingDiverged
    assert not issubclass(TrainingDiverged, UserError)      # a diverged run is not bad input: exit 1


def test_missing_trained_model(root, capsys):
    assert cli.main(["lottery", *DIGITS, "--levels=1"]) == 0
    (exp,) = root.iterdir()
    (exp / "replicate_1" / "level_1" / "main" / "model_ep1_it0.pth").unlink()
    capsys.readouterr()
    argv = ["lottery_branch", "randomly_prune", *DIGITS, "--levels=1", "--seed=3", "--start_at=end"]
    assert cli.main(argv) == 2
    one_error_line(capsys, "level 1 has no trained ticket", "model_ep1_it0.pth")


def test_missing_previous_level_mask(root, capsys, monkeypatch):
    """Level 0's mask disappears while the job runs (deleted by hand or by another tool)."""
    from open_lth_concave.lottery.runner import LotteryRunner
    original = LotteryRunner._run_level

    def run_level_then_lose_mask(self, level):
        row = original(self, level)
        if level == 0:
            (self.main_dir(0) / "mask.pth").unlink()
        return row

    monkeypatch.setattr(LotteryRunner, "_run_level", run_level_then_lose_mask)
    assert cli.main(["lottery", *DIGITS, "--levels=1"]) == 2
    one_error_line(capsys, "level 0 has no mask", "level 1 cannot be pruned")
    (exp,) = root.iterdir()
    assert not (exp / "replicate_1" / "level_1" / "main" / "mask.pth").exists()


def test_unsafe_archive(root, tmp_path, capsys, monkeypatch):
    """A downloaded CIFAR archive with a member escaping the dataset folder."""
    from open_lth_concave.datasets import download

    def fake_fetch(source, folder, timeout=0):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / source.filename
        with tarfile.open(path, "w:gz") as tf:
            info = tarfile.TarInfo("cifar-10-batches-py/../../escaped")
            info.size = 1
            tf.addfile(info, _io.BytesIO(b"x"))
        return path

    monkeypatch.setattr(download, "fetch", fake_fetch)
    monkeypatch.delenv("OPEN_LTH_NO_DOWNLOAD", raising=False)
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path / "datasets"))
    argv = ["train", "--default_hparams=cifar_resnet_20", "--training_steps=1it", "--quiet"]
    assert cli.main(argv) == 2
    one_error_line(capsys, "refusing archive member", "'..' path component")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "datasets" / "escaped").exists()


def test_held_lock(root, capsys, monkeypatch):
    """Another live process holds the experiment and the job is told not to wait."""
    from open_lth_concave.foundations.lock import ExperimentLock
    assert cli.main(["lottery", *DIGITS, "--levels=0", "--display_output_location"]) == 0
    replicate_dir = Path(capsys.readouterr().out.strip())
    holder = ExperimentLock(replicate_dir).acquire()
    real_acquire = ExperimentLock.acquire
    monkeypatch.setattr(ExperimentLock, "acquire", lambda self, wait=True, **kw: real_acquire(self, wait=False, **kw))
    try:
        assert cli.main(["lottery", *DIGITS, "--levels=0"]) == 2
    finally:
        holder.release()
    one_error_line(capsys, "is being run by pid", "try again when it finishes")
    assert not (replicate_dir / "level_0").exists()


@pytest.mark.parametrize("message", ["two\nlines", "  spaced  out  "])
def test_a_user_error_message_is_printed_on_one_line(message, capsys, monkeypatch):
    def fail(argv):
        raise UserError(message)
    monkeypatch.setitem(cli.SUBCOMMANDS, "boom", ("raises", fail))
    monkeypatch.setattr(cli, "_register_optional_subcommands", lambda: None)
    assert cli.main(["boom"]) == 2
    assert capsys.readouterr().err == f"open_lth boom: error: {' '.join(message.split())}\n"


DID_YOU_MEAN = [(["lottery", "--default_hparams=digits_lenet_300_100", "--levles=2"], "--levels"),
                (["lottery", "--default_hparams=quik_digits"], "quick_digits"),
                (["lottery", "--default_hparams=digits_lenet_300_100", "--pruning_strategy=sparse_globl"], "sparse_global"),
                (["lottery", "--default_hparams=digits_lenet_300_100", "--pruning_strategy=concave_lgo"], "log"),
                (["train", "--default_hparams=digits_lenet_300_100", "--dataset_name=mnsit"], "mnist"),
                (["lottery_branch", "randomly_prun", "--default_hparams=digits_lenet_300_100"], "randomly_prune"),
                (["lotery"], "lottery")]


@pytest.mark.parametrize("argv,meant", DID_YOU_MEAN, ids=[a[-1] for a, _ in DID_YOU_MEAN])
def test_a_misspelt_name_gets_the_closest_valid_one(argv, meant, capsys, tmp_path, monkeypatch):
    """One rule for every name looked up (flags, presets, strategies, regularizers, datasets, branches,
    subcommands): the one-line refusal says which valid name was probably meant."""
    from open_lth_concave import cli
    monkeypatch.setenv("OPEN_LTH_ROOT", str(tmp_path))
    assert cli.main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"(did you mean {meant}?)" in lines[0], lines
    assert not any(tmp_path.iterdir())
