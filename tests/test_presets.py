"""Every preset in hparams/ loads, validates into full lottery jobs for each of its strategies, says which
paper experiment it is, and writes no value its parent already has; the paper's settings are right."""
from __future__ import annotations

import tomllib

import pytest

from open_lth_concave import cli, jobs
from open_lth_concave.plugins import load_core, load_plugins
from open_lth_concave.presets import PRESET_DIR, list_presets, load_defaults

load_core()
load_plugins()
PRESETS = list_presets()
BASES = [p for p in PRESETS if "Not run by itself" in (PRESET_DIR / f"{p}.toml").read_text()]


def test_the_paper_grid_is_there():
    for arch in ("resnet20", "vgg11", "wrn20"):
        for data in ("cifar10", "cifar100", "tiny_imagenet"):
            assert f"paper_{arch}_{data}" in PRESETS
    for name in ("paper_resnet56_cifar10", "paper_ablation_hard_resnet20_cifar10", "quick_digits", "quick_mnist",
                 "paper_ablation_sigmoid_resnet20_cifar10", "paper_ablation_sigmoid_resnet20_cifar100"):
        assert name in PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_starts_with_a_comment_and_repeats_nothing(name):
    text = (PRESET_DIR / f"{name}.toml").read_text()
    assert text.startswith("# ") and ("Paper" in text.splitlines()[0] or "Miniature" in text.splitlines()[0])
    raw = tomllib.loads(text)
    parent = raw.pop("extends", None)
    if parent is None:
        return
    inherited = load_defaults(parent)
    for group, values in raw.items():
        for key, value in values.items():
            assert inherited.get(group, {}).get(key, object()) != value, f"{name}: {group}.{key} repeats {parent}"


@pytest.mark.parametrize("name", [p for p in PRESETS if p not in BASES])
@pytest.mark.slow
def test_preset_builds_every_strategy_job(name, tmp_path, capsys):
    """Through the CLI's own parser: compare validates every strategy x replicate job, writes nothing."""
    job = load_defaults(name)["job"]
    assert job["levels"] >= 1 and job["replicates"] >= 1 and job["strategies"]
    root = tmp_path / "results"
    assert cli.main(["compare", f"--default_hparams={name}", f"--root={root}", "--display_output_location"]) == 0
    assert capsys.readouterr().out.strip().startswith(str(root / "compare_"))
    assert not root.exists()
    for entry in job["strategies"]:
        strategy, *pairs = entry.split(":")
        runner = jobs.build("lottery", [f"--default_hparams={name}", f"--pruning_strategy={strategy}",
                                         *[f"--{p}" for p in pairs], f"--root={root}"]).runner
        assert runner.desc.pruning_hparams.pruning_strategy == strategy
        assert runner.levels == job["levels"]


def _training(name: str) -> dict:
    runner = jobs.build("lottery", [f"--default_hparams={name}", "--root=/nonexistent"]).runner
    return runner.desc.training_hparams.to_dict() | {"model": runner.desc.model_hparams.model_name,
                                                     "dataset": runner.desc.dataset_hparams.dataset_name,
                                                     "batch": runner.desc.dataset_hparams.batch_size}


@pytest.mark.parametrize("name, model, steps, milestones", [
    ("paper_resnet20_cifar10", "cifar_resnet_20", "85ep", "56ep,71ep"),
    ("paper_vgg11_tiny_imagenet", "cifar_vgg_11", "120ep", "60ep,90ep"),
    ("paper_wrn20_cifar100", "cifar_resnet_20_64", "120ep", "60ep,90ep"),
    ("paper_resnet56_cifar10", "cifar_resnet_56", "85ep", "56ep,71ep"),
])
def test_paper_settings(name, model, steps, milestones):
    t = _training(name)
    assert (t["model"], t["training_steps"], t["milestone_steps"]) == (model, steps, milestones)
    assert (t["optimizer_name"], t["lr"], t["momentum"], t["weight_decay"], t["gamma"], t["batch"]) == \
        ("sgd", 0.1, 0.9, 1e-4, 0.1, 128)
    assert t["dataset"] == name.split("_", 2)[2] if "resnet56" not in name else t["dataset"] == "cifar10"
    job = load_defaults(name)["job"]
    assert (job["levels"], job["replicates"]) == (3, 3)


def test_paper_presets_leave_lambda_and_epsilon_to_the_strategies():
    for name in PRESETS:
        if name.startswith("paper_"):
            text = (PRESET_DIR / f"{name}.toml").read_text()
            assert "regularization_lambda" not in text and "epsilon" not in text
