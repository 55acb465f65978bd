"""What an experiment records about how it was made (hparams.json once, platform.json per run), the stop
when a default changed under an existing name, and reading folders written by open_lth itself."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from open_lth_concave import cli
from open_lth_concave.foundations import io

from conftest import Crash, crash_at_training_batch

DIGITS = ["--default_hparams=digits_lenet_300_100", "--training_steps=1ep", "--quiet"]
CONCAVE = [*DIGITS, "--pruning_strategy=concave_log", "--levels=0"]


def experiments(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(("lottery_", "train_")))


def change_default(monkeypatch, cls, name: str, value) -> None:
    """What a new version of the code does: the dataclass field's default (and its __init__'s) changes."""
    monkeypatch.setattr(cls.__dataclass_fields__[name], "default", value)
    monkeypatch.setitem(cls.__init__.__kwdefaults__, name, value)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---- item 6: the full record, written once; the platform of each run ---------------------------------------
def test_hparams_json_records_every_field_once_and_each_run_its_platform(root, capsys):
    from open_lth_concave.foundations.hparams import DatasetHparams, ModelHparams, TrainingHparams
    from open_lth_concave.pruning.strategy import registry
    assert cli.main(["lottery", *DIGITS, "--levels=0"]) == 0
    (exp,) = experiments(root)
    record = io.load_json(exp / "hparams.json")
    for group, cls in (("dataset_hparams", DatasetHparams), ("model_hparams", ModelHparams),
                       ("training_hparams", TrainingHparams),
                       ("pruning_hparams", registry.get("sparse_global").hparams_cls)):
        assert set(record[group]) == {f.name for f in dataclasses.fields(cls)}, group   # defaults included
    assert record["dataset_hparams"]["do_not_augment"] is False and record["training_hparams"]["weight_decay"] is None
    assert record["pretrain_dataset_hparams"] is None
    written = (exp / "hparams.json").stat()

    # more levels on another platform: same experiment, record untouched, the platform only warns
    capsys.readouterr()
    assert cli.main(["lottery", *DIGITS, "--levels=1", "--memory_format=contiguous"]) == 0
    err = capsys.readouterr().err
    assert "another platform than level 0" in err and "memory_format: channels_last -> contiguous" in err
    after = (exp / "hparams.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)   # never rewritten
    rep = exp / "replicate_1"
    first = io.load_json(rep / "level_0" / "main" / "platform.json")["sessions"]
    second = io.load_json(rep / "level_1" / "main" / "platform.json")["sessions"]
    assert [s["platform"]["memory_format"] for s in first + second] == ["channels_last", "contiguous"]
    assert first[0]["platform"]["torch"] == torch.__version__ and first[0]["platform"]["open_lth_concave"]
    assert first[0]["platform"]["precision"] in ("fp32", "bf16 autocast") and first[0]["from_iteration"] == 0

    assert cli.main(["summary", str(exp)]) == 0
    out = capsys.readouterr().out
    assert f"- cpu, {first[0]['platform']['precision']}, channels_last" in out and ": level_0/main\n" in out
    assert f"contiguous, 1 thread; torch {torch.__version__}, open_lth_concave" in out and ": level_1/main" in out


def test_resumed_run_on_another_platform_warns_and_records_each_part(root, capsys, monkeypatch):
    undo = crash_at_training_batch(monkeypatch, 45 + 10)   # level 0, epoch 1 (45 iterations per epoch)
    argv = ["lottery", *DIGITS, "--training_steps=2ep", "--levels=0"]
    with pytest.raises(Crash):
        cli.main(argv)
    undo()
    capsys.readouterr()
    assert cli.main(argv + ["--memory_format=contiguous"]) == 0
    err = capsys.readouterr().err
    assert "level 0: resumed at step" in err and "memory_format: channels_last -> contiguous" in err
    (exp,) = experiments(root)
    main = exp / "replicate_1" / "level_0" / "main"
    sessions = io.load_json(main / "platform.json")["sessions"]
    assert [(s["from_iteration"], s["platform"]["memory_format"]) for s in sessions] == \
        [(0, "channels_last"), (45, "contiguous")]
    assert cli.main(["summary", str(exp)]) == 0
    assert "channels_last, 1 thread" in capsys.readouterr().out.split("then")[0]


# ---- item 7: a changed default under an existing name stops the job ------------------------------------------
def test_changed_concave_defaults_stop_a_rerun_with_one_line(root, capsys, monkeypatch):
    """The mask optimizer's defaults (threshold, mask_lr, mask_weight_decay) change in a new version."""
    from open_lth_concave.pruning.strategy import registry
    hparams_cls = registry.get("concave_log").hparams_cls
    names = ("mask_lr", "mask_weight_decay", "threshold")
    old = {n: hparams_cls.default_of(n) for n in names}
    assert cli.main(["lottery", *CONCAVE]) == 0
    (exp,) = experiments(root)
    stamps = {p: p.stat().st_mtime_ns for p in exp.rglob("*") if p.is_file()}

    new = {n: 0.003 if v is None else round(v + 0.01, 6) for n, v in old.items()}
    for n in names:  # the experiment's name stays the same: defaults are left out of it
        change_default(monkeypatch, hparams_cls, n, new[n])
    capsys.readouterr()
    assert cli.main(["lottery", *CONCAVE]) == 2
    err = one_error_line(capsys)
    assert f"experiment {exp.name} was made with other hyperparameters" in err
    for n in names:
        assert f"{n} recorded {old[n]!r}, now {new[n]!r}" in err
    flags = [f"--{n}={'none' if old[n] is None else old[n]}" for n in names]
    assert " ".join(flags) in err and f"move {exp} away" in err
    assert {p: p.stat().st_mtime_ns for p in exp.rglob("*") if p.is_file()} == stamps   # nothing touched
    assert experiments(root) == [exp]

    # `compare` refuses before anything runs, too
    assert cli.main(["compare", *CONCAVE[:-2], "--levels=0", "--strategies=concave_log"]) == 2
    assert f"threshold recorded {old['threshold']!r}" in one_error_line(capsys)

    # the way out the message names: the recorded values reproduce the old experiment, under a new name
    assert cli.main(["lottery", *CONCAVE, *flags]) == 0
    (reproduced,) = [p for p in experiments(root) if p != exp]
    old_record, new_record = (io.load_json(p / "hparams.json")["pruning_hparams"] for p in (exp, reproduced))
    assert new_record == old_record


def test_changed_training_default_stops_train_and_none_restores_it(root, capsys, monkeypatch):
    from open_lth_concave.foundations.hparams import TrainingHparams
    assert cli.main(["train", *DIGITS]) == 0
    (exp,) = experiments(root)
    change_default(monkeypatch, TrainingHparams, "weight_decay", 0.0005)
    capsys.readouterr()
    assert cli.main(["train", *DIGITS]) == 2
    err = one_error_line(capsys)
    assert "weight_decay recorded None, now 0.0005" in err and "--weight_decay=none" in err
    assert cli.main(["train", *DIGITS, "--weight_decay=none"]) == 0
    (other,) = [p for p in experiments(root) if p != exp]
    assert io.load_json(other / "hparams.json")["training_hparams"]["weight_decay"] is None
    # the dense weights equal the old experiment's: the same run, reproduced
    a = io.load_torch(exp / "replicate_1" / "main" / "model_ep1_it0.pth")
    b = io.load_torch(other / "replicate_1" / "main" / "model_ep1_it0.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_records_made_before_the_check_are_read_and_completed(root, capsys):
    """An older hparams.json: a field added since is missing, a field since removed is still there."""
    assert cli.main(["lottery", *DIGITS, "--levels=0"]) == 0
    (exp,) = experiments(root)
    record = io.load_json(exp / "hparams.json")
    del record["training_hparams"]["apex_fp16"]
    record["model_hparams"]["old_knob"] = 3
    (exp / "hparams.json").write_text(json.dumps(record))
    (exp / ".content_hashes.json").unlink()        # an older version recorded no content hashes
    capsys.readouterr()
    assert cli.main(["lottery", *DIGITS, "--levels=0"]) == 0
    assert "no longer has: model_hparams.old_knob=3" in capsys.readouterr().err
    completed = io.load_json(exp / "hparams.json")
    assert completed["training_hparams"]["apex_fp16"] is False            # recorded now, once
    assert completed["model_hparams"]["old_knob"] == 3                    # what was recorded stays


# ---- item 8: a folder written by open_lth itself ---------------------------------------------------------------
UPSTREAM_LOG = """Dataset Hyperparameters
    * dataset_name => cifar10
    * batch_size => 128
Model Hyperparameters
    * model_name => cifar_resnet_20
    * model_init => kaiming_normal
    * batchnorm_init => uniform
Pruning Hyperparameters
    * pruning_strategy => sparse_global
Training Hyperparameters
    * optimizer_name => sgd
    * lr => 0.1
    * training_steps => 160ep
"""


def build_upstream(root: Path) -> Path:
    """open_lth's layout (the contract): per level `main/` with hparams.log (level 0), logger, mask.pth,
    sparsity_report.json and the start/end models; no hparams.json, timing.json or report.json."""
    exp = root / "lottery_da8fd50859ba6d59aceca9d50ebcbf7e"   # the contract's minimal CIFAR-10 lottery
    shapes = {"conv.weight": (16, 3, 3, 3), "fc.weight": (10, 64)}
    kept = {0: (1.0, 1.0), 1: (0.8, 1.0), 2: (0.64, 1.0)}
    accuracy = {1: [0.9123, 0.9150, 0.9011], 2: [0.9201, 0.9177, 0.9088]}
    for rep in (1, 2):
        for level, (conv_kept, fc_kept) in kept.items():
            main = exp / f"replicate_{rep}" / f"level_{level}" / "main"
            main.mkdir(parents=True)
            if level == 0:
                (main / "hparams.log").write_text(UPSTREAM_LOG)
            mask = {}
            for (name, shape), fraction in zip(shapes.items(), (conv_kept, fc_kept)):
                n = torch.Size(shape).numel()
                flat = torch.zeros(n, dtype=torch.int32)
                flat[: round(fraction * n)] = 1
                mask[name] = flat.view(shape)
            torch.save(mask, main / "mask.pth")
            total = float(sum(v.numel() for v in mask.values()))
            unpruned = float(sum(int(v.sum()) for v in mask.values()))
            (main / "sparsity_report.json").write_text(json.dumps({"total": total, "unpruned": unpruned}))
            acc = accuracy[rep][level]
            (main / "logger").write_text(f"test_loss,0,2.3026\ntest_accuracy,0,0.1\ntest_examples,0,10000\n"
                                         f"test_loss,62400,0.3\ntest_accuracy,62400,{acc}\ntest_examples,62400,10000\n")
            state = {name: torch.randn(shape) for name, shape in shapes.items()}
            torch.save(state, main / "model_ep0_it0.pth")
            torch.save(state, main / "model_ep160_it0.pth")
    return exp


def test_summary_and_compare_read_a_folder_written_by_open_lth(tmp_path, capsys):
    exp = build_upstream(tmp_path / "open_lth_data")
    assert not (exp / "hparams.json").exists()
    assert cli.main(["summary", str(exp)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {exp.name}: IMP (sparse_global), ResNet-20 on CIFAR-10")
    assert "    * lr => 0.1" in out and "hyperparameters from replicate_1/level_0/main/hparams.log" in out
    # 432 conv + 640 fc weights; level 2 keeps round(0.64 * 432) = 276 conv weights
    assert "| 0 | 100.00 | 1072 / 1072 | 91.23 |" in out
    assert "| 1 | 91.98 | 986 / 1072 | 91.50 |" in out
    assert "| 2 | 85.45 | 916 / 1072 | 90.11 |" in out
    assert "| 2 | 85.45 | 916 / 1072 | 90.88 |" in out                     # replicate 2
    assert "| conv.weight | 16×3×3×3 | 276 / 432 | 63.89 |" in out
    assert "- not recorded: level_0/main, level_1/main, level_2/main" in out

    report = tmp_path / "report"
    assert cli.main(["compare", "--report_only", str(exp), "--output_dir", str(report)]) == 0
    with open(report / "comparison.csv") as f:
        rows = {int(r["level"]): r for r in csv.DictReader(f)}
    assert sorted(rows) == [0, 1, 2] and {r["strategy"] for r in rows.values()} == {"sparse_global"}
    assert float(rows[2]["remaining_pct"]) == pytest.approx(100 * 916 / 1072, abs=1e-6)
    assert float(rows[1]["accuracy_mean_pct"]) == pytest.approx((91.50 + 91.77) / 2, abs=1e-6)
    assert float(rows[2]["diff_from_dense_pct"]) == pytest.approx((90.11 + 90.88) / 2 - (91.23 + 92.01) / 2, abs=1e-6)
    assert rows[2]["replicates"] == "2"
    assert list(exp.rglob("hparams.json")) == []                            # reading writes nothing there
