"""Bad presets, bad paths and failing writes: one line naming the file (or path), the key and what is allowed,
exit 2, and nothing written -- never a traceback, never a silent default."""
from __future__ import annotations

from pathlib import Path

import pytest

from open_lth_concave import cli

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
