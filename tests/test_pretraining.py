"""Pretraining and rewinding: a pretraining dataset with another class count, zero rewinding steps, and
the dataset put on the device once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from open_lth_concave import cli
from open_lth_concave.datasets import loader, registry
from open_lth_concave.foundations import io
from open_lth_concave.foundations.hparams import ModelHparams
from open_lth_concave.training.experiment import make_model

from test_datasets import cifar_batch, write_pickle

DIGITS = ["--default_hparams=digits_lenet_300_100", "--quiet"]


def write_cifar(root: Path, seed: int = 0) -> Path:
    """Small CIFAR-10 and CIFAR-100 folders in the official python-batch layout."""
    rng = np.random.default_rng(seed)
    for i in range(1, 6):
        write_pickle(root / "cifar10" / "cifar-10-batches-py" / f"data_batch_{i}", cifar_batch(rng, 12, b"labels", 10))
    write_pickle(root / "cifar10" / "cifar-10-batches-py" / "test_batch", cifar_batch(rng, 20, b"labels", 10))
    for split, n in (("train", 48), ("test", 16)):
        batch = cifar_batch(rng, n, b"fine_labels", 100)
        batch[b"coarse_labels"] = [0] * n
        write_pickle(root / "cifar100" / "cifar-100-python" / split, batch)
    return root


@pytest.fixture
def cifar_root(tmp_path, monkeypatch) -> Path:
    root = write_cifar(tmp_path / "datasets")
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(root))
    loader.clear_cache()
    yield root
    loader.clear_cache()


def output_location(root: Path, *argv: str) -> str:
    import contextlib
    import io as stdio
    buffer = stdio.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli.main(["lottery", *DIGITS, "--root", str(root), "--display_output_location", *argv]) == 0
    return buffer.getvalue().strip()


# ---- item 3: pretraining on another class count ------------------------------------------------------------
LENET_ON_CIFAR = ["--default_hparams=mnist_lenet_16", "--dataset_name=cifar10", "--batch_size=16",
                  "--training_steps=1ep", "--quiet"]


def test_pretraining_on_cifar100_carries_over_to_cifar10_with_a_new_output_layer(root, cifar_root):
    argv = ["lottery", *LENET_ON_CIFAR, "--levels=1", "--pretrain", "--pretrain_dataset_name=cifar100",
            "--pretrain_training_steps=2ep", "--root", str(root)]
    assert cli.main(argv) == 0
    (rep,) = root.glob("lottery_*/replicate_1")
    pretrained = io.load_torch(rep / "level_pretrain" / "main" / "model_ep2_it0.pth")   # 48 images / 16 = 3 it/ep
    start = io.load_torch(rep / "level_0" / "main" / "model_ep0_it0.pth")
    assert pretrained["fc.weight"].shape == (100, 16) and start["fc.weight"].shape == (10, 16)
    initial = make_model(ModelHparams(model_name="mnist_lenet_16", model_init="kaiming_normal", batchnorm_init="uniform"),
                         registry.get("cifar100"), 1).state_dict()
    fresh = make_model(ModelHparams(model_name="mnist_lenet_16", model_init="kaiming_normal", batchnorm_init="uniform"),
                       registry.get("cifar10"), 1).state_dict()
    for name in ("fc_layers.0.weight", "fc_layers.0.bias"):
        assert torch.equal(start[name], pretrained[name])            # the pretrained layers carry over exactly
        assert not torch.equal(pretrained[name], initial[name])      # ... and they were trained
    for name in ("fc.weight", "fc.bias"):
        assert torch.equal(start[name], fresh[name])                 # a fresh output layer for 10 classes
    for level in (0, 1):                                             # the tickets train on CIFAR-10
        assert (rep / f"level_{level}" / "main" / "model_ep1_it0.pth").exists()
        end = io.load_torch(rep / f"level_{level}" / "main" / "model_ep1_it0.pth")
        assert end["fc.weight"].shape == (10, 16)


def test_pretraining_data_whose_images_do_not_fit_the_model_is_one_line_exit_2(root, cifar_root, capsys):
    argv = ["lottery", *LENET_ON_CIFAR, "--levels=1", "--pretrain", "--pretrain_dataset_name=digits",
            "--pretrain_batch_size=32", "--root", str(root)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--pretrain_dataset_name digits" in err and "fc_layers.0.weight" in err and "(16, 64)" in err
    assert not root.exists() or not any(root.rglob("*.pth"))


# ---- item 4: zero rewinding steps are no rewinding --------------------------------------------------------
@pytest.mark.parametrize("zero", ["0ep", "0it", "0ep0it"])
def test_zero_rewinding_steps_name_the_experiment_without_rewinding(root, zero):
    plain = output_location(root, "--levels=1")
    assert output_location(root, "--levels=1", f"--rewinding_steps={zero}") == plain
    assert output_location(root, "--levels=1", "--pretrain", f"--pretrain_training_steps={zero}") == plain
    assert output_location(root, "--levels=1", "--rewinding_steps=1it") != plain


def test_zero_rewinding_steps_run_without_a_pretraining_run(root):
    assert cli.main(["lottery", *DIGITS, "--training_steps=1ep", "--levels=0", "--rewinding_steps=0it",
                     "--root", str(root)]) == 0
    (experiment,) = root.glob("lottery_*")
    assert experiment.name == Path(output_location(root, "--training_steps=1ep", "--levels=0")).parent.name
    assert not (experiment / "replicate_1" / "level_pretrain").exists()
    assert (experiment / "replicate_1" / "level_0" / "main" / "model_ep1_it0.pth").exists()


# ---- item 11: the dataset goes onto the device once ---------------------------------------------------------
@pytest.fixture
def train_loaders(monkeypatch) -> list:
    """Every training BatchLoader made (each holds its own copy of the training set on the device)."""
    made = []
    original = loader.BatchLoader.__init__

    def counting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.train:
            made.append(self)
    monkeypatch.setattr(loader.BatchLoader, "__init__", counting)
    return made


def test_rewinding_in_place_loads_the_training_set_once(root, train_loaders):
    assert cli.main(["lottery", *DIGITS, "--training_steps=1ep", "--levels=1", "--rewinding_steps=3it",
                     "--root", str(root)]) == 0
    assert len(train_loaders) == 1
    (rep,) = root.glob("lottery_*/replicate_1")
    assert (rep / "level_pretrain" / "main" / "model_ep0_it3.pth").exists()
    assert (rep / "level_1" / "main" / "model_ep1_it0.pth").exists()


def test_compare_sets_up_each_trunk_once(root, train_loaders, capsys):
    assert cli.main(["compare", *DIGITS, "--training_steps=1ep", "--levels=0", "--strategies=sparse_global",
                     "--replicates=1", "--root", str(root)]) == 0
    assert len(train_loaders) == 1
    assert "Level 0:" in capsys.readouterr().out
