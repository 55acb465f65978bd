"""Bad presets, bad paths and failing writes: one line naming the file (or path), the key and what is allowed,
exit 2, and nothing written -- never a traceback, never a silent default."""
from __future__ import annotations

from pathlib import Path

import pytest

from open_lth_concave import cli
from open_lth_concave.foundations import io

PRESET_FAULTS = {
    # name: (file text or bytes, words the one line must hold)
    "misspelled training key": ('[training]\nlearning_rate = 0.5\n', ["learning_rate", "did you mean lr?"]),
    "misspelled job key": ('[job]\nlevelz = 2\n', ["levelz", "did you mean levels?"]),
    "misspelled pruning key": ('[pruning]\npruning_fractoin = 0.5\n', ["pruning_fractoin", "did you mean pruning_fraction?"]),
    "misspelled table": ('[trainig]\nlr = 0.5\n', ["[trainig]", "did you mean [training]?"]),
    "levels as a string": ('[job]\nlevels = "2"\n', ["levels = '2'", "an integer"]),
    "levels as a float": ('[job]\nlevels = 2.5\n', ["levels = 2.5", "an integer"]),
    "levels as a boolean": ('[job]\nlevels = true\n', ["levels = True", "an integer"]),
    "lr as a string": ('[training]\nlr = "0.1"\n', ["lr = '0.1'", "a number"]),
    "batch size as a float": ('[dataset]\nbatch_size = 32.5\n', ["batch_size = 32.5", "an integer"]),
    "a flag as a string": ('[model]\nbatchnorm_frozen = "yes"\n', ["batchnorm_frozen", "a boolean"]),
    "steps as an integer": ('[training]\ntraining_steps = 10\n', ["training_steps = 10", "a string"]),
    "strategies of numbers": ('[job]\nstrategies = [1, 2]\n', ["strategies", "a list of strings"]),
    "a section that is not a table": ('training = 5\n', ["training = 5", "must be a table"]),
    "extends a number": ('extends = 5\n', ["extends = 5", "a string"]),
    "extends itself": ('extends = "SELF"\n', ["extends itself"]),
    "not TOML": ('[training\nlr = 1\n', ["invalid preset file"]),
    "not UTF-8": (b'[training]\nlr = 0.5 # \xff\xfe\n', ["not UTF-8"]),
}


def _write(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content.replace("SELF", str(path)))


def one_line(capsys, *words) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize("command", ["lottery", "compare", "train"])
@pytest.mark.parametrize("fault", PRESET_FAULTS)
def test_bad_preset_is_one_line_before_anything_is_written(tmp_path, root, capsys, fault, command):
    content, words = PRESET_FAULTS[fault]
    preset = tmp_path / "mine.toml"
    _write(preset, content if fault in ("extends a number", "extends itself", "not TOML", "not UTF-8")
           or "[job]" in str(content) or "[trainig]" in str(content) or "training = 5" in str(content)
           else 'extends = "digits_lenet_300_100"\n' + content)
    argv = [command, f"--default_hparams={preset}", "--levels=1", "--training_steps=1ep"]
    if command == "compare":
        argv.append("--strategies=sparse_global")
    if command == "train":
        argv.remove("--levels=1")
    assert cli.main(argv) == 2
    one_line(capsys, str(preset), *words)
    assert not root.exists()


@pytest.mark.parametrize("fault", ["a folder named like a preset", "a missing file"])
def test_preset_path_that_is_not_a_file(tmp_path, root, capsys, fault):
    preset = tmp_path / "folder.toml"
    if fault == "a folder named like a preset":
        preset.mkdir()
    assert cli.main(["lottery", f"--default_hparams={preset}", "--levels=1"]) == 2
    one_line(capsys, str(preset), "a folder" if preset.exists() else "does not exist")
    assert not root.exists()


def test_preset_folder_in_the_preset_directory(tmp_path, root, capsys, monkeypatch):
    from open_lth_concave import presets
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)
    (tmp_path / "quick.toml").mkdir()
    assert cli.main(["lottery", "--default_hparams=quick", "--levels=1"]) == 2
    one_line(capsys, str(tmp_path / "quick.toml"), "a folder")
    assert not root.exists()


# ---- paths -----------------------------------------------------------------------------------------------------
DIGITS = ["--default_hparams=digits_lenet_300_100", "--training_steps=1ep", "--quiet"]


def _a_file(tmp_path: Path) -> Path:
    f = tmp_path / "a_file"
    f.write_text("not a folder")
    return f


PATH_FAULTS = {
    "--root is a file": lambda t: (["--root", str(_a_file(t))], {}, "a_file is a file"),
    "--root under a file": lambda t: (["--root", str(_a_file(t) / "sub")], {}, "a_file is a file"),
    "$OPEN_LTH_ROOT is a file": lambda t: ([], {"OPEN_LTH_ROOT": str(_a_file(t))}, "a_file is a file"),
    "--root is a dangling link": lambda t: (["--root", str(_dangling(t))], {}, "dangling symbolic link"),
}


def _dangling(tmp_path: Path) -> Path:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    return link


@pytest.mark.parametrize("command", ["lottery", "train", "compare"])
@pytest.mark.parametrize("fault", PATH_FAULTS)
def test_bad_results_root_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, fault, command):
    flags, env, words = PATH_FAULTS[fault](tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = [command, *DIGITS, *flags] + (["--levels=1"] if command != "train" else []) + \
        (["--strategies=sparse_global"] if command == "compare" else [])
    before = sorted(tmp_path.rglob("*"))
    assert cli.main(argv) == 2
    one_line(capsys, words)
    assert sorted(tmp_path.rglob("*")) == before


def test_compare_output_dir_that_is_a_file_is_found_before_training(tmp_path, root, capsys):
    out = _a_file(tmp_path)
    assert cli.main(["compare", *DIGITS, "--levels=1", "--strategies=sparse_global", "--output_dir", str(out)]) == 2
    one_line(capsys, "--output_dir", str(out), "is a file")
    assert not root.exists()                                   # nothing trained


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_root(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    assert cli.main(["lottery", *DIGITS, "--levels=1", "--root", str(ro / "results")]) == 2
    one_line(capsys, "is not writable", str(ro))


# ---- write failures --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.subprocess
def test_a_file_size_limit_stops_with_one_line_and_nothing_half_written(tmp_path):
    """A file-size limit smaller than a model file: one line naming the file and the cause, exit 2, no
    temporary or partial file; without the limit the same command then finishes as a clean run does."""
    import os
    import resource
    import subprocess
    import sys

    from conftest import REPO
    root = tmp_path / "root"
    argv = [sys.executable, "-m", "open_lth_concave", "lottery", *DIGITS, "--levels=1", "--root", str(root)]

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    failed = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, preexec_fn=limit, timeout=300)
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.count("\n") == 1 and "cannot write" in failed.stderr and ".pth" in failed.stderr
    assert "File too large" in failed.stderr and "Traceback" not in failed.stderr
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert all(p.stat().st_size < 20_000 for p in root.rglob("*") if p.is_file())  # none was cut at the limit
    assert cli.main(argv[3:]) == 0                                                  # without the limit
    assert cli.main(argv[3:-1] + [str(tmp_path / "clean")]) == 0
    (again,), (clean,) = root.glob("lottery_*"), (tmp_path / "clean").glob("lottery_*")
    assert io.load_json(again / "replicate_1" / "report.json")["levels"][1]["test_accuracy"] == \
        io.load_json(clean / "replicate_1" / "report.json")["levels"][1]["test_accuracy"]


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EDQUOT", "EACCES"])
def test_a_failing_disk_stops_with_one_line_naming_the_file(root, capsys, monkeypatch, errno_name):
    import errno
    import os
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)))
    monkeypatch.setattr(os, "fsync", failing_fsync)
    assert cli.main(["lottery", *DIGITS, "--levels=1"]) == 2
    monkeypatch.setattr(os, "fsync", real_fsync)
    err = one_line(capsys, "cannot write", os.strerror(getattr(errno, errno_name)))
    assert str(root) in err
    assert not [p for p in root.rglob("*") if p.is_file() and p.name != ".lock"]   # nothing (half-)written


def test_result_files_follow_the_umask(root, capsys):
    import os
    old = os.umask(0o022)
    try:
        assert cli.main(["lottery", *DIGITS, "--levels=0"]) == 0
    finally:
        os.umask(old)
    files = [p for p in root.rglob("*") if p.is_file() and p.name != ".lock"]
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files), \
        {p.name: oct(p.stat().st_mode & 0o777) for p in files}


# ---- smaller ones ----------------------------------------------------------------------------------------------
def test_zero_training_steps_run_quietly_and_leave_the_rewind_point_alone(root, capsys):
    argv = ["lottery", "--default_hparams=digits_lenet_300_100", "--training_steps=0ep", "--levels=1", "--quiet"]
    assert cli.main(argv) == 0
    assert "warning" not in capsys.readouterr().err
    (rewind,) = root.glob("lottery_*/replicate_1/level_0/main/model_ep0_it0.pth")
    stamp = rewind.stat().st_mtime_ns
    assert cli.main(argv) == 0
    assert "warning" not in capsys.readouterr().err
    assert rewind.stat().st_mtime_ns == stamp
    assert (rewind.parent / "logger").exists()


def test_imp_warns_when_a_layer_dies_and_stops_when_nothing_is_left(capsys):
    import torch
    from torch import nn

    from open_lth_concave.pruning.mask import Mask
    from open_lth_concave.pruning.sparse_global import SparseGlobal, SparseGlobalHparams
    from open_lth_concave.foundations.hparams import TrainingHparams
    from open_lth_concave.foundations.step import Step
    from open_lth_concave.pruning.strategy import PruningContext, PruningError
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(0.01)          # the smallest half of all weights: layer 0 entirely
        model[1].weight.copy_(torch.arange(1.0, 17.0).view(4, 4))
    mask = Mask({"0.weight": torch.ones(4, 4), "1.weight": torch.ones(4, 4)})
    strategy = SparseGlobal(SparseGlobalHparams(pruning_strategy="sparse_global", pruning_fraction=0.5))

    def ctx(level, current):
        return PruningContext(level, current, Path("."), None, lambda: model, lambda: model, None,
                              TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="1ep"), Step(0, 1), Step(1, 1))
    new = strategy.prune(ctx(1, mask))
    assert not bool(new["0.weight"].any()) and int(new["1.weight"].sum()) == 15   # open_lth's rule: strictly above
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "level 1 prunes every weight of 0.weight" in err
    strategy.prune(ctx(2, new))                                  # layer 1 still has weights: no second warning
    assert "0.weight" not in capsys.readouterr().err
    dead = Mask({"0.weight": torch.zeros(4, 4), "1.weight": torch.zeros(4, 4)})
    with pytest.raises(PruningError, match="level 3: every prunable tensor .* nothing is left to prune"):
        strategy.prune(ctx(3, dead))
