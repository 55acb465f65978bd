"""`open_lth compare`, `open_lth summary` and the paper summary, on planted runs with known numbers and on
real (tiny) digits runs."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from open_lth_concave import cli, jobs
from open_lth_concave.foundations import io
from open_lth_concave.pruning.mask import Mask

DIGITS = ["--default_hparams=digits_lenet_300_100", "--training_steps=1ep"]


# ---- planted runs ----------------------------------------------------------------------------------------
def plant_level(main: Path, unpruned: float, total: float, accuracy: float, ticket_s: float, search_s: float,
                mask: Mask | None = None) -> None:
    main.mkdir(parents=True, exist_ok=True)
    io.save_json({"total": total, "unpruned": unpruned}, main / "sparsity_report.json")
    io.save_text(f"test_loss,0,1.0\ntest_accuracy,0,0.1\ntest_loss,90,0.5\ntest_accuracy,90,{accuracy}\n"
                 "test_examples,90,360\n", main / "logger")
    io.save_json({"seconds": ticket_s, "iterations": 90}, main / "timing.json")
    io.save_json({"seconds": search_s, "strategy": "x"}, main / "pruning.json")
    if mask is not None:
        mask.save(main / "mask.pth")


def plant_experiment(root: Path, name: str, strategy: str, levels: dict[int, list[tuple]]) -> Path:
    """levels: replicate -> [(unpruned, accuracy, ticket_s, search_s) per level], total 1000 weights."""
    exp = root / name
    exp.mkdir(parents=True)
    io.save_json({"dataset_hparams": {"dataset_name": "digits", "batch_size": 32},
                  "model_hparams": {"model_name": "digits_lenet_300_100"},
                  "training_hparams": {"training_steps": "2ep"},
                  "pruning_hparams": {"pruning_strategy": strategy}}, exp / "hparams.json")
    for rep, rows in levels.items():
        for level, (unpruned, acc, ticket_s, search_s) in enumerate(rows):
            plant_level(exp / f"replicate_{rep}" / f"level_{level}" / "main", unpruned, 1000.0, acc, ticket_s, search_s)
    return exp


@pytest.fixture
def planted(tmp_path) -> tuple[Path, Path, Path]:
    root = tmp_path / "planted"
    imp = plant_experiment(root, "lottery_aaa", "sparse_global", {
        1: [(1000, 0.90, 10.0, 0.0), (800, 0.88, 8.0, 0.5)],
        2: [(1000, 0.92, 12.0, 0.0), (800, 0.91, 9.0, 1.5)]})
    concave = plant_experiment(root, "lottery_bbb", "concave_l1", {
        1: [(1000, 0.90, 10.0, 0.0), (500, 0.89, 7.0, 20.0)],
        2: [(1000, 0.92, 12.0, 0.0), (600, 0.93, 5.0, 30.0)]})
    return root, imp, concave


def read_csv(path: Path) -> dict[tuple[str, int], dict]:
    with open(path) as f:
        return {(r["strategy"], int(r["level"])): r for r in csv.DictReader(f)}


def test_table_from_planted_runs(planted, tmp_path, capsys):
    root, imp, concave = planted
    out = tmp_path / "cmp"
    assert cli.main(["compare", "--report_only", str(imp), str(concave), "--output_dir", str(out)]) == 0
    rows = read_csv(out / "comparison.csv")
    assert sorted(rows) == [("concave_l1", 0), ("concave_l1", 1), ("sparse_global", 0), ("sparse_global", 1)]

    def check(key, remaining, rem_std, acc, acc_std, diff):
        r = rows[key]
        assert float(r["remaining_pct"]) == pytest.approx(remaining, abs=1e-6)
        assert float(r["remaining_std_pct"]) == pytest.approx(rem_std, abs=1e-6)
        assert float(r["accuracy_mean_pct"]) == pytest.approx(acc, abs=1e-6)
        assert float(r["accuracy_std_pct"]) == pytest.approx(acc_std, abs=1e-6)
        assert float(r["diff_from_dense_pct"]) == pytest.approx(diff, abs=1e-6)
        assert r["replicates"] == "2"
    check(("sparse_global", 0), 100.0, 0.0, 91.0, math.sqrt(2), 0.0)
    check(("sparse_global", 1), 80.0, 0.0, 89.5, math.sqrt(4.5), -1.5)
    check(("concave_l1", 0), 100.0, 0.0, 91.0, math.sqrt(2), 0.0)
    check(("concave_l1", 1), 55.0, math.sqrt(50), 91.0, math.sqrt(8), 0.0)
    assert float(rows[("concave_l1", 1)]["search_seconds_mean"]) == pytest.approx(25.0)
    assert float(rows[("sparse_global", 1)]["ticket_seconds_mean"]) == pytest.approx(8.5)

    summary = json.loads((out / "comparison.json").read_text())
    by_label = {s["label"]: s for s in summary["strategies"]}
    # IMP's search consumes the trained level-0 ticket: (0.5 + 10) and (1.5 + 12) -> mean 12.0
    assert by_label["sparse_global"]["find_seconds_mean"] == pytest.approx(12.0)
    assert by_label["concave_l1"]["find_seconds_mean"] == pytest.approx(25.0)  # searches only
    assert by_label["concave_l1"]["final_ticket_seconds_mean"] == pytest.approx(6.0)
    assert (out / "comparison.png").stat().st_size > 10_000
    md = (out / "comparison.md").read_text()
    assert "| IMP | 1 | 80.00 | 89.50 ± 2.12 | -1.50 | 2 |" in md
    assert "| Concave ℓ1 | 1 | 55.00 ± 7.07 | 91.00 ± 2.83 | +0.00 | 2 |" in md
    assert "89.50 ± 2.12" in capsys.readouterr().out


def test_report_only_merges_replicate_folders_and_default_folder(planted, capsys):
    root, imp, concave = planted
    args = [str(imp / "replicate_1"), str(imp / "replicate_2"), str(concave / "replicate_2")]
    assert cli.main(["compare", "--report_only", *args]) == 0
    out = next(root.glob("compare_*"))
    rows = read_csv(out / "comparison.csv")
    assert rows[("sparse_global", 1)]["replicates"] == "2"
    assert rows[("concave_l1", 1)]["replicates"] == "1"
    assert float(rows[("concave_l1", 1)]["remaining_pct"]) == pytest.approx(60.0)
    assert float(rows[("concave_l1", 1)]["accuracy_std_pct"]) == 0.0


def test_labels_tell_apart_variants_of_one_strategy(tmp_path):
    from open_lth_concave.report.runs import Experiment
    from open_lth_concave.report.table import labels_for
    a = Experiment(tmp_path / "a", {"pruning_hparams": {"pruning_strategy": "concave_l1", "pruning_mode": "threshold"}})
    b = Experiment(tmp_path / "b", {"pruning_hparams": {"pruning_strategy": "concave_l1", "pruning_mode": "fraction"}})
    c = Experiment(tmp_path / "c", {"pruning_hparams": {"pruning_strategy": "sparse_global"}})
    assert labels_for([a, b, c]) == ["concave_l1 (pruning_mode=threshold)", "concave_l1 (pruning_mode=fraction)",
                                     "sparse_global"]


# ---- summary ------------------------------------------------------------------------------------------------
def test_summary_prints_levels_and_layers(planted, capsys):
    _, imp, _ = planted
    mask = Mask({"fc1.weight": torch.tensor([[1.0, 0.0], [1.0, 1.0]]), "fc.weight": torch.zeros(3)})
    mask.save(imp / "replicate_2" / "level_1" / "main" / "mask.pth")
    assert cli.main(["summary", str(imp / "replicate_2")]) == 0
    out, err = capsys.readouterr()
    assert "dataset_name => digits" in out and "pruning_strategy => sparse_global" in out
    assert "| 0 | 100.00 | 1000 / 1000 | 92.00 | — | 12.0 s |" in out
    # the planted report says 800/1000 but the mask holds 3/7: the mask's counts are shown, with a note
    assert "| 1 | 42.86 | 3 / 7 | 91.00 | 1.5 s | 9.0 s |" in out
    assert "sparsity_report.json does not hold the counts of" in err
    assert "| fc1.weight | 2×2 | 3 / 4 | 75.00 |" in out
    assert "| fc.weight | 3 | 0 / 3 | 0.00 |" in out
    assert "Replicate 1" not in out


# ---- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["--strategies=sparse_global,no_such"], ["no_such", "sparse_global", "concave_l1"]),
    (["--strategies=sparse_global", "--replicates=0"], ["--replicates 0"]),
    (["--strategies=sparse_global", "--pruning_strategy=sparse_global"], ["--strategies"]),
    (["--strategies=sparse_global:no_field=1"], ["no_field"]),
    (["--strategies=sparse_global", "--no_such_flag=1"], ["--no_such_flag"]),
    (["--strategies=sparse_global,sparse_global:pruning_fraction=0.2"], ["same experiment"]),
])
def test_bad_compare_flags_exit_2_with_one_line(root, capsys, argv, words):
    assert cli.main(["compare", *DIGITS, "--levels=1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for word in words:
        assert word in err
    assert not root.exists()


def test_report_only_without_runs_exits_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["compare", "--report_only", str(empty)]) == 2
    assert "no lottery runs in" in capsys.readouterr().err
    (empty / "hparams.json").write_text("{}")
    assert cli.main(["compare", "--report_only", str(empty)]) == 2
    assert cli.main(["summary", str(tmp_path / "missing")]) == 2
    assert list(empty.iterdir()) == [empty / "hparams.json"]


# ---- real runs -----------------------------------------------------------------------------------------------
def _model_files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.glob("lottery_*/replicate_*/level_*/main/model_*.pth")}


def test_compare_shares_level0_and_reuses_finished_runs(root, capsys):
    argv = ["compare", *DIGITS, "--levels=1", "--strategies=sparse_global,concave_l1", "--replicates=2"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "dense level 0 shared from" in first
    assert first.count("level 0\tep") == 2 * 2  # level 0 trained once per replicate (2 evaluations in 1ep)
    experiments = sorted(root.glob("lottery_*"))
    assert len(experiments) == 2
    for rep in (1, 2):
        logs = [(e / f"replicate_{rep}" / "level_0" / "main" / "logger").read_text() for e in experiments]
        assert logs[0] == logs[1] and "test_accuracy" in logs[0]  # one run, so identical accuracies
    out = next(root.glob("compare_*"))
    rows = read_csv(out / "comparison.csv")
    assert rows[("sparse_global", 0)]["accuracy_mean_pct"] == rows[("concave_l1", 0)]["accuracy_mean_pct"]
    assert float(rows[("sparse_global", 1)]["remaining_pct"]) < 100.0
    before, csv_text = _model_files(root), (out / "comparison.csv").read_text()

    assert cli.main(argv) == 0
    second = capsys.readouterr().out
    assert "\tep " not in second and "shared from" not in second  # nothing trained, nothing shared
    assert _model_files(root) == before
    assert (out / "comparison.csv").read_text() == csv_text


def test_share_dense_level_links_a_finished_level0(root, capsys):
    from open_lth_concave.lottery.share import share_dense_level
    assert cli.main(["lottery", *DIGITS, "--levels=0", "--quiet"]) == 0
    runner = jobs.build("lottery", [*DIGITS, "--levels=0", "--pruning_fraction=0.5", "--quiet"]).runner
    source = share_dense_level(runner)
    assert source is not None and source != runner.main_dir(0)
    for f in source.iterdir():
        if f.name != "hparams.log":
            assert (runner.main_dir(0) / f.name).read_bytes() == f.read_bytes()
    assert share_dense_level(runner) is None  # already finished here
    other = jobs.build("lottery", [*DIGITS, "--levels=0", "--lr=0.01", "--quiet"]).runner
    assert share_dense_level(other) is None  # different training: nothing to share


# ---- paper summary and dataset check ---------------------------------------------------------------------
def test_paper_summary_links_tables_and_times(planted, tmp_path, capsys):
    from open_lth_concave.report import paper_summary
    root, imp, concave = planted
    out = root / "compare_x"
    assert cli.main(["compare", "--report_only", str(imp), str(concave), "--output_dir", str(out)]) == 0
    page = root / "paper_summary.md"
    assert paper_summary.main(["--output", str(page), str(out)]) == 0
    text = page.read_text()
    assert "[table](compare_x/comparison.md)" in text and "](compare_x/comparison.png)" in text
    assert "| LeNet-300-100 | Digits (8×8) | IMP | 12.0 s | 8.5 s |" in text
    assert "| LeNet-300-100 | Digits (8×8) | Concave ℓ1 | 25.0 s | 6.0 s |" in text
    assert paper_summary.main(["--output", str(page), str(tmp_path)]) == 2


def test_check_datasets_names_what_is_missing(tmp_path, monkeypatch, capsys):
    from open_lth_concave.report import check_datasets
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path / "none"))
    assert check_datasets.main(["quick_digits"]) == 0
    assert check_datasets.main(["paper_resnet20_cifar100", "digits"]) == 1
    err = capsys.readouterr().err
    assert "cifar100" in err and "cifar-100-python" in err
    assert check_datasets.main(["no_such_preset"]) == 2


# ---- progress display ------------------------------------------------------------------------------------
def test_progress_live_bar_plain_lines_and_quiet():
    import io as _io
    from open_lth_concave.foundations.step import Step
    from open_lth_concave.training.progress import Progress
    start, end = Step(0, 10), Step(20, 10)

    live = _io.StringIO()
    with Progress("level 1", start, end, stream=live, live=True, interval=0.0) as p:
        p.evaluation(start, 2.5, 0.1, 100)
        for i in range(1, 21):
            p.step(Step(i, 10))
        p.evaluation(end, 0.25, 0.975, 100)
    text = live.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and text.count("\r") >= 20
    assert "ep 1/2 it 5" in text and "ETA" in text
    assert "100% ep 2/2 it 0 test loss 0.250 acc 97.50%" in text.splitlines()[-1].split("\r")[-1]

    plain = _io.StringIO()
    p = Progress("level 1", start, end, stream=plain)  # a StringIO is not a terminal
    p.evaluation(Step(10, 10), 0.5, 0.9, 100)
    p.step(Step(11, 10))
    p.close()
    assert plain.getvalue().startswith("level 1\tep 001\tit 000\tloss 0.500\tacc 90.00%\tex 100\ttime ")
    assert plain.getvalue().count("\n") == 1

    quiet = _io.StringIO()
    with Progress("x", start, end, stream=quiet, live=True, quiet=True) as p:
        p.evaluation(start, 1.0, 0.5, 10)
        p.step(Step(5, 10))
    assert quiet.getvalue() == ""


def test_model_names_in_titles_say_narrow_or_wide_as_the_width_is():
    from open_lth_concave.report.names import model_name
    assert model_name("cifar_resnet_20") == model_name("cifar_resnet_20_16") == "ResNet-20"
    assert model_name("cifar_resnet_20_8") == "ResNet-20 (width 8)"          # narrower: not a wide ResNet
    assert model_name("cifar_resnet_20_64") == "WideResNet-20 (width 64)"    # the paper's WRN-20
