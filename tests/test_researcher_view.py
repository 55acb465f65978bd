"""What a researcher sees (issue 15): the automatic thread count and the help and error messages."""
from __future__ import annotations

import torch
import pytest

from open_lth_concave import cli
from open_lth_concave.platform import Platform, threads

from conftest import one_error_line

DIGITS = ["--default_hparams=digits_lenet_300_100", "--levels=1", "--quiet"]


# ---- automatic threads --------------------------------------------------------------------------------
def test_forward_macs_counts_linear_and_conv_layers_from_shapes():
    from open_lth_concave.models import registry
    with torch.device("meta"):
        lenet = registry.get("mnist_lenet_300_100").build((1, 28, 28), 10)
        resnet = registry.get("cifar_resnet_20").build((3, 32, 32), 10)
    assert threads.forward_macs(lenet, (1, 28, 28)) == 784 * 300 + 300 * 100 + 100 * 10
    # ResNet-20's forward is about 41 M multiply-accumulates per 32x32 image (convolutions + the linear head)
    assert 39e6 < threads.forward_macs(resnet, (3, 32, 32)) < 42e6


def test_choice_is_one_thread_for_small_steps_and_the_idle_cores_for_large_ones():
    assert threads.choose(threads.SMALL_STEP_MACS / 2, usable=8, busy=0.0).threads == 1
    assert threads.choose(threads.SMALL_STEP_MACS / 2, usable=8, busy=0.0).reason == "small model"
    cpus = __import__("os").cpu_count()
    big = threads.SMALL_STEP_MACS * 10
    assert threads.choose(big, usable=cpus, busy=0.0).threads == cpus
    assert threads.choose(big, usable=cpus, busy=float(cpus)).threads == 1          # everything busy: 1
    assert threads.choose(big, usable=1, busy=0.0).threads == 1                      # affinity limits it
    if cpus >= 2:
        assert threads.choose(big, usable=cpus, busy=1.0).threads == cpus - 1


def test_banner_shows_the_automatic_choice_and_an_explicit_count_overrides_it(root, capsys):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert cli.main(["train", "--default_hparams=digits_lenet_300_100", "--training_steps=2it", "--quiet"]) == 0
        assert torch.get_num_threads() == 1
        platform_line = Platform(device="cpu").summary()
        assert platform_line.endswith("1 thread (auto: small model)"), platform_line
        torch.set_num_threads(1)
        assert cli.main(["train", "--default_hparams=digits_lenet_300_100", "--training_steps=2it", "--quiet",
                         "--threads=2"]) == 0
        assert torch.get_num_threads() == 2
        assert Platform(device="cpu", threads=2).summary().endswith("2 threads")
    finally:
        torch.set_num_threads(before)


# ---- help and errors ----------------------------------------------------------------------------------
def test_help_lists_registered_strategies_models_datasets_and_patterns(capsys):
    with pytest.raises(SystemExit):
        cli.main(["lottery", "--help"])
    out = capsys.readouterr().out
    for needle in ("pruning strategies:", "concave_log", "sparse_global", "concave_<regularizer>",
                   "models:", "cifar_resnet_<D>[_<W>]", "mnist_lenet_<w1>_<w2>...", "datasets:", "digits", "cifar10",
                   "presets (--default_hparams):", "quick_digits"):
        assert needle in out, needle
    assert cli.main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "pruning strategies: concave_l1, concave_log" in out and "models: cifar_resnet_<D>[_<W>]" in out


def test_a_flag_of_another_strategy_says_which_strategies_have_it(root, capsys):
    assert cli.main(["lottery", *DIGITS, "--threshold=0.3"]) == 2
    one_error_line(capsys, "unrecognized arguments: --threshold=0.3",
                   "--threshold exists for --pruning_strategy", "concave_log", "not for sparse_global")
    assert not root.exists()
    assert cli.main(["lottery", *DIGITS, "--no_such_flag=1"]) == 2   # a flag nobody has: no hint
    err = one_error_line(capsys, "unrecognized arguments: --no_such_flag=1")
    assert "exists for" not in err


def test_compare_lists_all_of_a_strategys_own_flags(root, capsys):
    assert cli.main(["compare", *DIGITS, "--strategies=sparse_global,concave_log:foo=1"]) == 2
    one_error_line(capsys, "concave_log has no flag --foo", "--regularization_lambda", "--threshold",
                   "--epsilon", "--pruning_mode")
    assert not root.exists()


def test_a_missing_preset_path_says_the_file_does_not_exist(root, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "mine.toml"
    assert cli.main(["lottery", f"--default_hparams={missing}", "--levels=1"]) == 2
    one_error_line(capsys, f"invalid --default_hparams {missing}", "does not exist")


def test_a_flag_without_effect_in_the_chosen_mode_is_refused(root, capsys):
    assert cli.main(["lottery", *DIGITS, "--pruning_strategy=concave_log", "--pruning_mode=threshold",
                     "--pruning_fraction=0.3"]) == 2
    one_error_line(capsys, "invalid --pruning_fraction with --pruning_strategy concave_log", "mode is threshold")
    assert not root.exists()
    # where it acts it is accepted (and changes the name), and compare drops it for an entry where it does not
    assert cli.main(["lottery", *DIGITS, "--pruning_strategy=concave_log", "--pruning_fraction=0.3",
                     "--pruning_mode=target", "--display_output_location"]) == 0
    capsys.readouterr()
    from open_lth_concave.jobs.compare import parse_entries, strategy_argvs
    entries = parse_entries("sparse_global,concave_log:pruning_mode=threshold,concave_l1:pruning_mode=fraction")
    argvs, dropped = strategy_argvs([*DIGITS, "--pruning_fraction=0.3"], entries)
    assert "--pruning_fraction=0.3" in argvs[0] and "--pruning_fraction=0.3" in argvs[2]
    assert "--pruning_fraction=0.3" not in argvs[1] and dropped[1] == ["--pruning_fraction"]


def test_layers_to_ignore_are_checked_before_any_training(root, capsys):
    assert cli.main(["lottery", *DIGITS, "--pruning_layers_to_ignore=fc.weight,fc9.weight"]) == 2
    one_error_line(capsys, "invalid --pruning_layers_to_ignore fc9.weight", "fc_layers.0.weight")
    assert not root.exists()


# ---- every run explains itself ------------------------------------------------------------------------
SHORT = ["--default_hparams=digits_lenet_300_100", "--training_steps=20it", "--quiet"]


def test_branch_prints_banner_and_results_records_its_arguments_and_summary_lists_it(root, capsys):
    import json
    assert cli.main(["lottery", *SHORT, "--levels=1"]) == 0
    capsys.readouterr()
    argv = ["lottery_branch", "randomly_prune", *SHORT, "--levels=0-1", "--seed=7"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Lottery Branch randomly_prune (Replicate 1, levels 0-1)" in out and "Output Location:" in out
    assert "Branch Arguments (randomly_prune)\n    * seed => 7" in out
    lines = [line for line in out.splitlines() if line.startswith("Level ")]
    assert [line.split(":")[0] for line in lines] == ["Level 0 branch randomly_prune", "Level 1 branch randomly_prune"]
    assert "remaining weights 100.00% (50200/50200), test accuracy" in lines[0]
    assert "remaining weights 80.40% (40359/50200), test accuracy" in lines[1]
    (exp,) = [p for p in root.iterdir() if p.name.startswith("lottery_")]
    (folder,) = (exp / "replicate_1" / "level_1").glob("lottery_branch_randomly_prune_*")
    rec = json.loads((folder / "branch.json").read_text())
    assert rec["branch"] == "randomly_prune" and rec["level"] == 1
    assert rec["arguments"] == {"seed": 7, "strategy": "layerwise", "start_at": "rewind", "layers_to_ignore": ""}
    assert cli.main(argv) == 0   # a finished branch: its results again, nothing retrained
    again = capsys.readouterr().out
    assert [line for line in again.splitlines() if line.startswith("Level ")] == lines
    assert cli.main(["summary", str(exp)]) == 0
    summary = capsys.readouterr().out
    assert "Branches on this trunk:" in summary
    assert "- level 1: randomly_prune (layers_to_ignore=, seed=7, start_at=rewind, strategy=layerwise): remaining " \
           "weights 80.40%" in summary


def test_pretraining_groups_are_labelled_in_banner_hparams_log_and_summary(root, capsys):
    assert cli.main(["lottery", *SHORT, "--levels=0", "--rewinding_steps=5it"]) == 0
    out = capsys.readouterr().out
    assert "Pretraining Dataset Hyperparameters" in out and "Pretraining Training Hyperparameters" in out
    assert out.count("Dataset Hyperparameters") == 2 and out.count("\nDataset Hyperparameters") == 1
    (exp,) = [p for p in root.iterdir() if p.name.startswith("lottery_")]
    log = (exp / "replicate_1" / "level_0" / "main" / "hparams.log").read_text()
    assert "Pretraining Training Hyperparameters\n" in log and "    * training_steps => 5it" in log
    assert cli.main(["summary", str(exp)]) == 0
    assert "Pretraining Training Hyperparameters" in capsys.readouterr().out


def test_a_resumed_run_says_where_it_resumed(root, capsys, monkeypatch):
    from conftest import Crash, crash_at_training_batch
    undo = crash_at_training_batch(monkeypatch, 45 + 11)   # level 0, in epoch 1 (45 iterations per epoch)
    argv = ["lottery", "--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--quiet", "--levels=0"]
    with pytest.raises(Crash):
        cli.main(argv)
    undo()
    capsys.readouterr()
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "level 0: resumed at 1ep0it (of 2ep0it) from " in out and "checkpoint.pth" in out


def test_compare_numbers_its_runs_and_gives_one_line_for_finished_ones(root, capsys):
    argv = ["compare", *SHORT, "--levels=1", "--replicates=1", "--strategies=sparse_global,concave_log"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "run 1 of 2: sparse_global replicate 1\n" in first and "run 2 of 2: concave_log replicate 1\n" in first
    assert cli.main(argv) == 0
    again = capsys.readouterr().out
    assert "Lottery Ticket Experiment" not in again    # no banner for finished runs
    assert "run 1 of 2: sparse_global replicate 1: finished; level 1: remaining weights 80.40%, ticket test " \
           "accuracy" in again
    assert "run 2 of 2: concave_log replicate 1: finished; level 1:" in again
    (folder,) = [p for p in root.iterdir() if p.name.startswith("compare_")]
    assert cli.main(["summary", str(folder)]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith(f"# {folder.name}\n") and "| Strategy | Level |" in summary
    assert "Files: comparison.csv, comparison.json, comparison.md, comparison.png" in summary


def test_version_and_summary_of_a_training_folder(root, capsys):
    from open_lth_concave import __version__
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"open_lth_concave {__version__}\n"
    assert cli.main(["train", *SHORT]) == 0
    accuracy = capsys.readouterr().out.strip().splitlines()[-1].split()[-1]      # "Final test accuracy 90.83%"
    (folder,) = [p for p in root.iterdir() if p.name.startswith("train_")]
    for path in (folder, folder / "replicate_1"):
        assert cli.main(["summary", str(path)]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"# {folder.name}: dense training") and "    * training_steps => 20it" in out
        assert f"| 1 | {accuracy.rstrip('%')} | 20 | " in out and "1 thread; torch" in out


def test_concave_search_line_gives_the_share_removed_per_layer(root, capsys):
    import json
    assert cli.main(["lottery", *SHORT, "--levels=1", "--pruning_strategy=concave_log", "--mask_optimizer=scaled"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Level 1 search:")]
    (exp,) = [p for p in root.iterdir() if p.name.startswith("lottery_")]
    metrics = json.loads((exp / "replicate_1" / "level_1" / "pruning" / "search_metrics.json").read_text())
    expected = ", ".join(f"{n} {100 * (r['before'] - r['remaining']) / r['before']:.0f}%"
                         for n, r in metrics["layers"].items() if n not in metrics["ignored_layers"])
    assert line.endswith(f"; removed per layer: {expected}"), line
    assert "fc_layers.0.weight" in expected and "fc.weight" not in expected    # the preset ignores fc.weight


# ---- plots and tables ---------------------------------------------------------------------------------
def test_comparison_files_figures_labels_title_and_single_replicate_table(root, capsys, tmp_path):
    from open_lth_concave.pruning.mask import Mask
    from open_lth_concave.report import figures, table
    from open_lth_concave.report.plot import legend_labels
    from open_lth_concave.report.runs import read_experiment
    assert cli.main(["compare", *SHORT, "--levels=1", "--replicates=1",
                     "--strategies=sparse_global,concave_log:mask_optimizer=scaled:pruning_mode=threshold"]) == 0
    capsys.readouterr()
    (out,) = [p for p in root.iterdir() if p.name.startswith("compare_")]
    for name in ("comparison.png", *figures.FIGURES):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 10_000, name
    md = (out / "comparison.md").read_text()
    assert "## LeNet-300-100 on Digits (8×8), 360 test images; 20it per round, rewind to init" in md
    assert "| IMP | 1 | 80.40 | " in md and "±" not in md.split("| Replicates |")[1].split("| Strategy | Time")[0]
    exps = [read_experiment(p) for p in sorted(root.glob("lottery_*"))]
    stats = table.compute(exps)
    labels = dict(zip([e.strategy for e in exps], legend_labels(stats)))
    assert labels == {"sparse_global": "IMP", "concave_log": "Concave log (mask optimizer scaled, mode threshold, α 0.4)"}
    # the learning curve is the level's logger; the histogram covers the weights that survived level 0
    concave = next(e for e in exps if e.strategy == "concave_log")
    steps, acc = figures.learning_curve(concave, 1)
    assert steps == [0, 20] and len(acc) == 2 and 0 < acc[-1] <= 100
    rep = concave.path / "replicate_1"
    edges, counts, alpha, cut = figures.search_histogram(rep / "level_1", rep / "level_0" / "main" / "mask.pth")
    assert cut == alpha                                                       # threshold mode: alpha pruned
    before = Mask.load(rep / "level_0" / "main" / "mask.pth")
    after = Mask.load(rep / "level_1" / "main" / "mask.pth")
    prunable = ["fc_layers.0.weight", "fc_layers.1.weight"]                   # the preset ignores fc.weight
    assert alpha == 0.4 and sum(counts) == sum(int(before[n].sum()) for n in prunable)
    removed = sum(int(before[n].sum()) - int(after[n].sum()) for n in prunable)
    below = sum(c for e, c in zip(edges, counts) if e < alpha)
    assert removed > 0 and abs(below - removed) <= 0.01 * sum(counts), (below, removed)
    per_layer = figures.layer_remaining(concave)
    assert per_layer[0] == {n: 100.0 for n in before} and per_layer[1]["fc.weight"] == 100.0
    assert per_layer[1]["fc_layers.0.weight"] == pytest.approx(100 * float(after["fc_layers.0.weight"].mean()))
    # summary draws the same figures for one run
    assert cli.main(["summary", str(concave.path), "--figures", str(tmp_path / "figs")]) == 0
    assert "Figures written to" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "figs").iterdir() if not p.name.startswith(".")) == sorted(figures.FIGURES)


def test_accuracy_axis_spans_at_least_25_test_images():
    from open_lth_concave.report.plot import accuracy_limits
    lo, hi = accuracy_limits([97.0, 97.1], test_images=2000)     # a 2-image wiggle on 2,000 images
    assert hi - lo == pytest.approx(1.1 * 25 * 0.05) and lo < 97.0 and hi > 97.1
    lo, hi = accuracy_limits([80.0, 95.0], test_images=2000)     # real differences keep their own range
    assert hi - lo == pytest.approx(1.1 * 15.0)
    lo, hi = accuracy_limits([98.0, 99.72], test_images=360)       # near 100%: the axis stops at 100
    assert hi == 100.0 and lo == pytest.approx(100.0 - 1.1 * 25 * 100 / 360) and lo < 98.0


def test_time_table_names_the_platform_and_marks_runs_from_different_ones(root, capsys, tmp_path):
    before = torch.get_num_threads()
    try:
        assert cli.main(["lottery", *SHORT, "--levels=1", "--threads=1"]) == 0
        assert cli.main(["lottery", *SHORT, "--levels=1", "--pruning_strategy=concave_log",
                         "--mask_optimizer=scaled", "--threads=2"]) == 0
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    dirs = [str(p) for p in sorted(root.glob("lottery_*"))]
    assert cli.main(["compare", "--report_only", *dirs, "--output_dir", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| Platform |" in md
    assert "| IMP † |" in md and "| Concave log † |" in md and "channels_last, 1 thread |" in md
    assert "channels_last, 2 threads |" in md and "† Not comparable: these times come from 2 different platforms" in md
    # either experiment alone ran on one platform: no mark
    assert cli.main(["compare", "--report_only", dirs[0], "--output_dir", str(tmp_path / "one")]) == 0
    assert "†" not in (tmp_path / "one" / "comparison.md").read_text()


# ---- optional TensorBoard ------------------------------------------------------------------------------
def test_tensorboard_without_the_package_is_one_line_before_anything_runs(root, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert cli.main(["lottery", *SHORT, "--levels=1", "--tensorboard"]) == 2
    one_error_line(capsys, "invalid --tensorboard: the tensorboard package is not installed (pip install tensorboard)")
    assert not root.exists()


def test_tensorboard_events_hold_the_logged_scalars_and_the_search_masks(root, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from open_lth_concave.training.metric_logger import MetricLogger
    assert cli.main(["lottery", *SHORT, "--levels=1", "--pruning_strategy=concave_log", "--mask_optimizer=scaled",
                     "--tensorboard"]) == 0
    (exp,) = [p for p in root.iterdir() if p.name.startswith("lottery_")]
    rep = exp / "replicate_1"

    def events(run: str) -> EventAccumulator:
        acc = EventAccumulator(str(rep / "tensorboard" / run), size_guidance={"scalars": 0, "histograms": 0})
        acc.Reload()
        return acc
    ticket = events("level_1/main")
    logged = MetricLogger.load(rep / "level_1" / "main" / "logger").get("test_accuracy")
    assert [(e.step, pytest.approx(e.value)) for e in ticket.Scalars("test_accuracy")] == logged
    search = events("level_1/pruning/search")
    assert "mask_values" in search.Tags()["histograms"] and "train_loss" in search.Tags()["scalars"]
    levels = events("levels")
    assert [round(e.value, 2) for e in levels.Scalars("remaining_weights_pct")][0] == 100.0


def test_a_near_miss_of_a_documented_model_is_refused_where_defaults_are_looked_up(root, capsys):
    assert cli.main(["lottery", "--default_hparams=mnist_lenet_300_10", "--levels=1"]) == 2
    one_error_line(capsys, "invalid --default_hparams mnist_lenet_300_10: not a documented model",
                   "mnist_lenet_300_100", "--default_hparams=mnist_lenet_300_100 --model_name=mnist_lenet_300_10")
    assert not root.exists()
    # named on purpose as the model, or far from any documented name, it is accepted
    assert cli.main(["lottery", "--default_hparams=mnist_lenet_300_100", "--model_name=mnist_lenet_300_10",
                     "--levels=1", "--display_output_location"]) == 0
    assert cli.main(["lottery", "--default_hparams=mnist_lenet_16", "--levels=1", "--display_output_location"]) == 0


@pytest.mark.subprocess
@pytest.mark.parametrize("argv", [["--version"], [], ["--help"], ["lotery"]], ids=["version", "listing", "help", "typo"])
def test_the_first_answers_come_before_torch_is_imported(argv):
    """`open_lth --version`, the listing and an unknown subcommand answer without importing torch (3.7 s of a
    loaded 2-core machine's start-up before; 0.1-0.35 s after)."""
    import subprocess
    import sys
    code = ("import sys; from open_lth_concave.cli import main; rc = main(%r); "
            "print('TORCH', 'torch' in sys.modules, rc)" % (argv,))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == f"TORCH False {2 if argv == ['lotery'] else 0}", r.stdout + r.stderr


def test_milestones_past_the_end_of_a_shortened_run_are_named(root, capsys):
    """A preset's lr drops kept with a shorter --training_steps never happen: one warning names them."""
    base = ["--default_hparams=digits_lenet_300_100", "--gamma=0.1", "--training_steps=2ep", "--quiet"]
    assert cli.main(["train", *base, "--milestone_steps=1ep,2ep,5ep"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: --milestone_steps 2ep,5ep lie at or after the end of --training_steps 2ep: those "
                        "lr drops never happen; set --milestone_steps for this length"]
    assert cli.main(["lottery", *base, "--milestone_steps=1ep", "--levels=0"]) == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]


def test_a_target_level_histogram_marks_what_was_pruned_not_all_below_alpha(root):
    """When a target level prunes by count (capped: more than the target fell below alpha), the histogram's
    red part is the pruned share, not every mask below alpha."""
    from open_lth_concave.foundations import io
    from open_lth_concave.report import figures
    assert cli.main(["lottery", "--default_hparams=digits_lenet_300_100", "--quiet", "--levels=1", "--training_steps=2ep",
                     "--pruning_strategy=concave_log", "--pruning_mode=target", "--pruning_fraction=0.1"]) == 0
    (rep,) = root.glob("lottery_*/replicate_1")
    metrics = io.load_json(rep / "level_1" / "pruning" / "search_metrics.json")
    assert metrics["target_outcome"] == "capped"             # the loss alone took more than 10% below alpha
    edges, counts, alpha, cut = figures.search_histogram(rep / "level_1", rep / "level_0" / "main" / "mask.pth")
    assert cut < alpha
    red = sum(c for c, a in zip(counts, edges[:-1]) if a <= cut)
    boundary = next(c for c, a, b in zip(counts, edges[:-1], edges[1:]) if a <= cut < b)
    assert abs(red - metrics["removed"]) <= boundary            # up to the bin the cut falls in
    assert sum(c for c, a in zip(counts, edges[:-1]) if a < alpha) > red + boundary


def test_every_figure_holds_its_titles_inside_the_image(root, tmp_path, monkeypatch):
    """Long titles were clipped on both sides: the saved image must be wide enough for every title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image
    from open_lth_concave.report import figures
    assert cli.main(["lottery", "--default_hparams=digits_lenet_300_100", "--quiet", "--levels=1",
                     "--training_steps=1ep", "--pruning_strategy=concave_log"]) == 0
    widths = {}
    save = figures._save

    def keep(fig, path):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        widths[path.name] = max(t.get_window_extent(renderer).width for t in fig.texts + [ax.title for ax in fig.axes]
                                if t.get_text())
        save(fig, path)
    monkeypatch.setattr(figures, "_save", keep)
    (exp,) = root.glob("lottery_*")
    assert cli.main(["summary", str(exp), "--figures", str(tmp_path / "figs")]) == 0
    assert set(widths) == set(figures.FIGURES)
    for name, widest in widths.items():
        image_width = matplotlib.image.imread(tmp_path / "figs" / name).shape[1]
        assert widest <= image_width, (name, widest, image_width)


def test_summary_of_a_comparison_writes_its_figures_where_asked(root, tmp_path, capsys):
    from open_lth_concave.report import figures
    assert cli.main(["compare", "--default_hparams=digits_lenet_300_100", "--quiet", "--levels=1", "--replicates=1",
                     "--training_steps=1ep", "--strategies=sparse_global,concave_log"]) == 0
    (out,) = [p for p in root.iterdir() if p.name.startswith("compare_")]
    capsys.readouterr()
    assert cli.main(["summary", str(out), "--figures", str(tmp_path / "figs")]) == 0
    written = sorted(p.name for p in (tmp_path / "figs").iterdir() if not p.name.startswith("."))
    assert written == sorted(["comparison.png", *figures.FIGURES])
    assert all((tmp_path / "figs" / n).read_bytes() == (out / n).read_bytes() for n in written)
    assert f"Figures written to {tmp_path / 'figs'}: comparison.png" in capsys.readouterr().out


def test_the_per_layer_figure_says_which_tensor_is_never_pruned(root, tmp_path, monkeypatch):
    """The preset's ignored output layer stays at 100% by design; its tick says so."""
    from open_lth_concave.report import figures
    assert cli.main(["lottery", "--default_hparams=digits_lenet_300_100", "--quiet", "--levels=1",
                     "--training_steps=1ep"]) == 0
    ticks = {}
    save = figures._save

    def keep(fig, path):
        ticks[path.name] = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
        save(fig, path)
    monkeypatch.setattr(figures, "_save", keep)
    (exp,) = root.glob("lottery_*")
    assert cli.main(["summary", str(exp), "--figures", str(tmp_path / "figs")]) == 0
    assert ticks["layer_remaining.png"] == ["fc_layers.0", "fc_layers.1", "fc (never pruned)"]


def test_learning_curves_zoom_on_the_differences_and_label_the_mean_sparsity(root, tmp_path, monkeypatch):
    """n=2 replicates: each level's legend gives the mean remaining share over them (it showed replicate 1's),
    and the accuracy axis covers the curves past their start instead of 0-100."""
    import json
    from open_lth_concave.report import figures
    for r in (1, 2):
        assert cli.main(["lottery", "--default_hparams=digits_lenet_300_100", "--quiet", "--levels=1", "--training_steps=3ep",
                         "--pruning_strategy=concave_log", "--pruning_mode=threshold", "--mask_optimizer=scaled",
                         f"--replicate={r}"]) == 0
    drawn = {}
    save = figures._save

    def keep(fig, path):
        drawn[path.name] = [(ax.get_ylim(), [t.get_text() for t in ax.get_legend().get_texts()])
                            for ax in fig.axes if ax.get_legend() is not None]
        save(fig, path)
    monkeypatch.setattr(figures, "_save", keep)
    (exp,) = root.glob("lottery_*")
    assert cli.main(["summary", str(exp), "--figures", str(tmp_path / "figs")]) == 0
    ((low, high), legend), = drawn["learning_curves.png"]
    shares = [json.loads((exp / f"replicate_{r}" / "report.json").read_text())["levels"][1]["remaining"] for r in (1, 2)]
    assert shares[0] != shares[1] and legend[1] == f"level 1 ({100 * sum(shares) / 2:.3g}%)"
    assert 50 < low < high <= 100
