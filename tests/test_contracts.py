"""Contract tests over every registry entry (timm's habit): the entries are collected from the registries
when the tests are collected, after the core and the plug-ins (the bundled concave one included) have
registered theirs, so a new model pattern, dataset, pruning or training strategy, branch or hyperparameter
range is tested here without editing this file.

- pruning strategy: on a tiny model whose previous mask already prunes weights (an ignored tensor too),
  the new mask has the same tensors, holds only 0/1, never revives a pruned weight and leaves ignored
  tensors exactly as they were (searches get a tiny budget: digits, 2 epochs of 6 steps);
- training strategy: a few real steps through the training loop keep every pruned weight at zero, give
  a finite loss, and its state (which checkpoints carry) loads back with weights_only=True;
- model pattern: its declared small example builds, runs forward on a batch of its dataset's shape, and
  its state dict saved and loaded with weights_only=True gives equal outputs in a differently seeded model;
- dataset: tiny files written in its on-disk format are read back (uint8 images of its shape, labels);
- branch: runs on a tiny finished trunk level, records itself, and is not run again on a rerun;
- hyperparameters: every declared range holds its default, refuses a value outside it with the one
  message, appears in --help, and a field redeclared by a subclass keeps a range.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import gzip
import math
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from open_lth_concave.plugins import load_core, load_plugins

load_core()
load_plugins()
import open_lth_concave.concave  # noqa: E402,F401  (the bundled plug-in, whether or not its entry point is installed)
from open_lth_concave import cli  # noqa: E402
from open_lth_concave.branches.base import registry as branches  # noqa: E402
from open_lth_concave.concave.regularizers import registry as regularizers  # noqa: E402
from open_lth_concave.datasets import registry as datasets  # noqa: E402
from open_lth_concave.datasets.loader import load_dataset  # noqa: E402
from open_lth_concave.foundations import io  # noqa: E402
from open_lth_concave.foundations.hparams import (DatasetHparams, HparamError, Hparams, ModelHparams,  # noqa: E402
                                                  TrainingHparams, range_error)
from open_lth_concave.foundations.step import Step  # noqa: E402
from open_lth_concave.training.experiment import make_data, make_model  # noqa: E402
from open_lth_concave.models import Model, get_model  # noqa: E402
from open_lth_concave.models import registry as models  # noqa: E402
from open_lth_concave.platform import Platform  # noqa: E402
from open_lth_concave.pruning.mask import Mask, apply_mask  # noqa: E402
from open_lth_concave.pruning.strategy import PruningContext  # noqa: E402
from open_lth_concave.pruning.strategy import registry as pruning_strategies  # noqa: E402
from open_lth_concave.training import loop  # noqa: E402
from open_lth_concave.training.metric_logger import MetricLogger  # noqa: E402
from open_lth_concave.training.strategy import TrainResult  # noqa: E402
from open_lth_concave.training.strategy import registry as training_strategies  # noqa: E402

PRUNING = pruning_strategies.list()
TRAINING = training_strategies.list()
MODEL_PATTERNS = models.patterns()
MODEL_NAMES = models.list()
DATASETS = datasets.list()
BRANCHES = branches.list()

TINY_MODEL = "digits_lenet_16"          # 64 -> 16 -> 10: fc_layers.0.weight and the output fc.weight
IGNORED = "fc.weight"
CPU = Platform(device="cpu")


def test_the_registries_hold_the_core_and_the_concave_plugin():
    """The parametrizations below are not empty (a registry that lost its entries would test nothing)."""
    assert {"sparse_global", "concave_l1", "concave_log", "concave_lq", "concave_mcp", "sigmoid_mask"} <= set(PRUNING)
    assert {"standard", "soft_mask", "sigmoid_mask"} <= set(TRAINING)
    assert {"mnist_lenet_<w1>_<w2>...", "digits_lenet_<w1>_<w2>...", "cifar_resnet_<D>[_<W>]",
            "cifar_vgg_<11|13|16|19>"} <= set(MODEL_PATTERNS)
    assert {"digits", "mnist", "cifar10", "cifar100", "tiny_imagenet"} <= set(DATASETS)
    assert {"randomly_prune", "randomly_reinitialize", "retrain"} <= set(BRANCHES)


# ================================================================ pruning strategies

@pytest.fixture(scope="module")
def tiny_level():
    """digits, a LeNet 64-16-10, 6 steps per epoch; a previous mask pruning 40% of each tensor
    (the ignored output layer included: 'untouched' must mean exactly as it was)."""
    dataset = DatasetHparams(dataset_name="digits", batch_size=256)
    training = TrainingHparams(optimizer_name="sgd", lr=0.05, momentum=0.9, training_steps="2ep")
    model_hparams = ModelHparams(**models.get(TINY_MODEL).defaults["model"])
    data = make_data(dataset, training, 1, CPU)
    ipe = data.iterations_per_epoch
    rewind = make_model(model_hparams, data.spec, 1)
    g = torch.Generator().manual_seed(7)
    previous = Mask.ones_like(rewind)
    for name in previous:
        previous[name] = (torch.rand(previous[name].shape, generator=g) > 0.4).float()
    # stands for level L-1's trained ticket, with other magnitudes; its pruned weights are the largest, so
    # a strategy that ranks weights without looking at the previous mask would revive them
    trained = copy.deepcopy(rewind)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
            if name in previous:
                p[previous[name] == 0] = 10.0
    return {"data": data, "training": training, "rewind": rewind, "trained": trained, "previous": previous,
            "start": Step.zero(ipe), "end": Step.from_str(training.training_steps, ipe)}


def pruning_context(level: dict, folder: Path) -> PruningContext:
    data, training = level["data"], level["training"]

    def train(model, mask, output_dir, make_strategy=None, label="contract search") -> TrainResult:
        job = loop.TrainJob(output_dir, model, mask, data.train, data.test, training, level["start"], level["end"],
                            CPU, make_strategy=make_strategy or loop.Standard, quiet=True,
                            evaluate_only_at_end=True, label=label)
        return loop.train(job)

    return PruningContext(level=2, current_mask=Mask({k: v.clone() for k, v in level["previous"].items()}),
                          artifacts_dir=folder / "level_2" / "pruning", previous_artifacts_dir=None,
                          trained_model=lambda: copy.deepcopy(level["trained"]),
                          rewind_model=lambda: copy.deepcopy(level["rewind"]), train=train,
                          training_hparams=training, start_step=level["start"], end_step=level["end"], replicate=1)


def _pruning_cases() -> list:
    """Each strategy with its defaults, and once per other value of a declared `pruning_mode` it accepts
    (so the concave searches also prune something in 12 steps: `fraction` removes exactly 20%)."""
    cases = []
    for name in PRUNING:
        cls = pruning_strategies.get(name).hparams_cls
        fields = {f.name: f for f in dataclasses.fields(cls)}
        base: dict[str, Any] = {"pruning_strategy": name}
        if "pruning_layers_to_ignore" in fields:
            base["pruning_layers_to_ignore"] = IGNORED
        cases.append(pytest.param(name, base, id=name))
        mode = fields.get("pruning_mode")
        for choice in (mode.metadata.get("choices") or []) if mode is not None else []:
            values = {**base, "pruning_mode": choice}
            if choice == mode.default:
                continue
            try:
                cls.from_dict(values)
            except HparamError:
                continue                       # a mode this strategy refuses (sigmoid_mask: target)
            cases.append(pytest.param(name, values, id=f"{name}-{choice}"))
    return cases


@pytest.mark.parametrize("name,values", _pruning_cases())
def test_pruning_strategy_never_revives_a_weight_and_leaves_ignored_tensors(name, values, tiny_level, tmp_path, capsys):
    cls = pruning_strategies.get(name)
    fields = {f.name for f in dataclasses.fields(cls.hparams_cls)}
    strategy = cls(cls.hparams_cls.from_dict(values))
    previous = tiny_level["previous"]
    ctx = pruning_context(tiny_level, tmp_path)
    new = strategy.prune(ctx)

    assert isinstance(new, Mask) and set(new) == set(previous)
    for tensor in previous:
        assert new[tensor].shape == previous[tensor].shape, tensor
        assert bool(((new[tensor] == 0) | (new[tensor] == 1)).all()), f"{tensor}: values other than 0 and 1"
        revived = int(((new[tensor] == 1) & (previous[tensor] == 0)).sum())
        assert revived == 0, f"{name} revived {revived} pruned weights of {tensor}"
    if "pruning_layers_to_ignore" in fields:
        assert torch.equal(new[IGNORED], previous[IGNORED]), f"{name} changed the ignored tensor {IGNORED}"
    assert all(torch.equal(ctx.current_mask[t], previous[t]) for t in previous), f"{name} edited the previous mask"
    new.check_against(tiny_level["rewind"])   # what the lottery runner checks before saving it


# ================================================================ training strategies

@pytest.mark.parametrize("name", TRAINING)
def test_training_strategy_keeps_pruned_weights_at_zero(name, tiny_level, tmp_path, capsys):
    cls = training_strategies.get(name)
    model = copy.deepcopy(tiny_level["rewind"])
    mask = tiny_level["previous"]
    apply_mask(model, mask)
    level = dict(tiny_level, end=Step.from_str("1ep", tiny_level["start"].iterations_per_epoch))
    made = []
    job = loop.TrainJob(tmp_path / name, model, mask, level["data"].train, level["data"].test, level["training"],
                        level["start"], level["end"], CPU, make_strategy=lambda m, k: made.append(cls(m, k)) or made[-1],
                        quiet=True)
    result = loop.train(job)
    assert isinstance(result, TrainResult) and result.strategy is made[-1]
    trained, strategy = result

    weights = dict(trained.named_parameters())
    for tensor, m in mask.items():
        assert torch.equal(weights[tensor].detach()[m == 0], torch.zeros(int((m == 0).sum()))), \
            f"{name} moved pruned weights of {tensor}"
    losses = [v for _, v in MetricLogger.load(tmp_path / name / "logger").get("train_loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    io.save_torch(strategy.state_dict(), tmp_path / "strategy.pth")    # checkpoints carry it
    again = io.load_torch(tmp_path / "strategy.pth")
    made[-1].load_state_dict(again)
    strategy.hparams.validate()


# ================================================================ models

def _example(shown: str) -> str:
    example = MODEL_PATTERNS[shown]
    assert example is not None, (f"model pattern {shown} declares no small example: give "
                                 "register_pattern(..., example=NAME) so the contract tests can build it")
    return example


MODEL_CASES = [pytest.param(shown, id=shown) for shown in MODEL_PATTERNS] + \
              [pytest.param(name, id=name) for name in MODEL_NAMES]


@pytest.mark.parametrize("entry", MODEL_CASES)
def test_model_builds_runs_forward_and_round_trips_its_state_dict(entry, tmp_path):
    name = _example(entry) if entry in MODEL_PATTERNS else entry
    spec = models.get(name)
    model_hparams = ModelHparams(**spec.defaults["model"])
    data_spec = datasets.get(spec.defaults["dataset"]["dataset_name"])
    model = get_model(model_hparams, data_spec.image_shape, data_spec.num_classes, torch.Generator().manual_seed(0))
    assert isinstance(model, Model)
    state = model.state_dict()
    assert model.prunable_layer_names and set(model.prunable_layer_names) <= set(state)
    assert model.output_layer_names and set(model.output_layer_names) <= set(state)

    x = torch.randn((3, *data_spec.image_shape), generator=torch.Generator().manual_seed(1))
    model.train()
    assert tuple(model(x).shape) == (3, data_spec.num_classes)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert tuple(out.shape) == (3, data_spec.num_classes) and bool(torch.isfinite(out).all())

    io.save_torch(model.state_dict(), tmp_path / "model.pth")
    loaded = torch.load(tmp_path / "model.pth", weights_only=True)
    other = get_model(model_hparams, data_spec.image_shape, data_spec.num_classes, torch.Generator().manual_seed(5))
    other.eval()
    with torch.no_grad():
        assert not torch.equal(other(x), out)          # another seed computes something else ...
        other.load_state_dict(loaded)
        assert torch.equal(other(x), out)              # ... until it holds the saved state


# ================================================================ datasets

Split = tuple[np.ndarray, np.ndarray]   # images uint8 [N, C, H, W], labels


def _idx(array: np.ndarray, magic: int) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


def write_mnist(folder: Path, rng: np.random.Generator) -> dict[bool, Split]:
    out = {}
    for train, prefix, n in ((True, "train", 7), (False, "t10k", 3)):
        images = rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images[:, 0], 0x803)))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(labels, 0x801))
        out[train] = images, labels
    return out


def _cifar_writer(subdir: str, train_files: list[str], test_file: str, label_key: bytes, classes: int):
    def write(folder: Path, rng: np.random.Generator) -> dict[bool, Split]:
        out = {}
        for train, files in ((True, train_files), (False, [test_file])):
            parts = []
            for file in files:
                n = int(rng.integers(1, 4))
                images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
                labels = rng.integers(0, classes, n)
                batch = {b"batch_label": b"contract", label_key: labels.tolist(), b"data": images.reshape(n, -1),
                         b"filenames": [b"x.png"] * n}
                (folder / subdir).mkdir(parents=True, exist_ok=True)
                (folder / subdir / file).write_bytes(pickle.dumps(batch, protocol=4))
                parts.append((images, labels))
            out[train] = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return out
    return write


def write_tiny_imagenet(folder: Path, rng: np.random.Generator) -> dict[bool, Split]:
    from PIL import Image
    root = folder / "tiny-imagenet-200"
    wnids = ["n03", "n01", "n02"]                          # labels follow the sorted ids
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    colors = {w: tuple(int(c) for c in rng.integers(0, 256, 3)) for w in wnids}

    def jpeg(path: Path, wnid: str) -> np.ndarray:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), colors[wnid]).save(path, quality=100)
        return np.broadcast_to(np.array(colors[wnid], dtype=np.uint8)[:, None, None], (3, 64, 64))

    train = [(jpeg(root / "train" / w / "images" / f"{w}_{i}.JPEG", w), sorted(wnids).index(w))
             for w in sorted(wnids) for i in range(2)]
    val_ids = ["n02", "n03"]
    val = [(jpeg(root / "val" / "images" / f"val_{i}.JPEG", w), sorted(wnids).index(w)) for i, w in enumerate(val_ids)]
    (root / "val" / "val_annotations.txt").write_text(
        "".join(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63\n" for i, w in enumerate(val_ids)))
    return {flag: (np.stack([s[0] for s in split]), np.array([s[1] for s in split]))
            for flag, split in ((True, train), (False, val))}


# name -> (writer of small files in its on-disk format, largest pixel difference after reading back)
WRITERS: dict[str, tuple[Callable[[Path, np.random.Generator], dict[bool, Split]], int]] = {
    "mnist": (write_mnist, 0),
    "cifar10": (_cifar_writer("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                              b"labels", 10), 0),
    "cifar100": (_cifar_writer("cifar-100-python", ["train"], "test", b"fine_labels", 100), 0),
    "tiny_imagenet": (write_tiny_imagenet, 3),                   # JPEG
}


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_reads_small_files_in_its_format(name, tmp_path, monkeypatch):
    spec = datasets.get(name)
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path))
    monkeypatch.setenv("OPEN_LTH_NO_DOWNLOAD", "1")
    written = None
    if not spec.embedded:
        assert name in WRITERS, (f"dataset {name} has no writer of its file format in {__file__}: add one, "
                                 "so its reader is tested on small files")
        if name == "tiny_imagenet":
            pytest.importorskip("PIL")
        writer, tolerance = WRITERS[name]
        (tmp_path / name).mkdir()
        written = writer(tmp_path / name, np.random.default_rng(sum(map(ord, name))))
    for train in (True, False):
        _, data = load_dataset(DatasetHparams(dataset_name=name, batch_size=1), train=train, seed=1)
        assert data.images.dtype == torch.uint8 and tuple(data.images.shape[1:]) == spec.image_shape
        assert data.labels.dtype == torch.int64 and data.labels.shape == (len(data.images),)
        assert int(data.labels.min()) >= 0 and int(data.labels.max()) < spec.num_classes
        assert len(spec.mean) == len(spec.std) == spec.image_shape[0]
        if written is not None:
            images, labels = written[train]
            assert data.labels.tolist() == labels.tolist()
            difference = (data.images.int() - torch.from_numpy(np.ascontiguousarray(images)).int()).abs().max()
            assert int(difference) <= tolerance, f"{name} pixels differ by {int(difference)}"


# ================================================================ branches

TRUNK = ["--default_hparams=digits_lenet_16", "--training_steps=3it", "--batch_size=256", "--threads=1", "--quiet"]


@pytest.fixture(scope="module")
def trunk(tmp_path_factory):
    root = tmp_path_factory.mktemp("trunk") / "results"
    assert cli.main(["lottery", *TRUNK, "--levels=1", f"--root={root}"]) == 0
    (experiment,) = root.iterdir()
    return root, experiment / "replicate_1" / "level_1"


def _required_arguments(name: str) -> list[str]:
    cls = branches.get(name).hparams_cls
    out = []
    for field in cls.required_fields():
        typ, _ = cls.field_types()[field]
        assert typ is int, f"branch {name}: no contract value for its required {typ.__name__} --{field}"
        out.append(f"--{field}=1")
    return out


@pytest.mark.parametrize("name", BRANCHES)
def test_branch_runs_on_a_trunk_level_records_itself_and_is_not_rerun(name, trunk, capsys):
    from open_lth_concave.branches.base import RECORD
    from open_lth_concave.results import branch_result
    root, level_dir = trunk
    argv = ["lottery_branch", name, *TRUNK, "--levels=1", f"--root={root}", *_required_arguments(name)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    (folder,) = level_dir.glob(f"lottery_branch_{name}_*")
    record = io.load_json(folder / RECORD)
    assert record["branch"] == name and record["level"] == 1
    numbers = branch_result(folder)
    assert numbers is not None and 0 < numbers["remaining"] <= 1
    assert numbers["test_accuracy"] is not None and 0 <= numbers["test_accuracy"] <= 1
    trunk_mask = Mask.load(level_dir / "main" / "mask.pth")
    assert {k: v.shape for k, v in Mask.load(folder / "mask.pth").items()} == {k: v.shape for k, v in trunk_mask.items()}
    files = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    models_written = {p: p.stat().st_mtime_ns for p in folder.glob("model_*.pth")}
    assert models_written and cli.main(argv) == 0
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == files, f"{name}'s rerun changed files"
    assert {p: p.stat().st_mtime_ns for p in folder.glob("model_*.pth")} == models_written, f"{name} trained again"


# ================================================================ hyperparameter ranges

def _hparams_classes() -> list[tuple[str, type[Hparams]]]:
    out = [("dataset", DatasetHparams), ("model", ModelHparams), ("training", TrainingHparams), ("platform", Platform)]
    out += [(f"pruning:{n}", pruning_strategies.get(n).hparams_cls) for n in PRUNING]
    out += [(f"training:{n}", training_strategies.get(n).hparams_cls) for n in TRAINING]
    out += [(f"regularizer:{n}", regularizers.get(n).hparams_cls) for n in regularizers.list()]
    out += [(f"branch:{n}", branches.get(n).hparams_cls) for n in BRANCHES]
    return out


HPARAMS = _hparams_classes()
KNOWN_VALID = {"dataset_name": "digits", "batch_size": 32, "model_name": TINY_MODEL, "model_init": "kaiming_normal",
               "batchnorm_init": "uniform", "optimizer_name": "sgd", "lr": 0.1, "training_steps": "1ep", "seed": 1}


def _valid_values(key: str, cls: type[Hparams]) -> dict[str, Any]:
    values = {}
    for field in cls.required_fields():
        if field == "pruning_strategy":
            values[field] = key.split(":", 1)[1]
        else:
            assert field in KNOWN_VALID, f"{key}: no contract value for its required field {field}"
            values[field] = KNOWN_VALID[field]
    return values


def _outside(allowed, integer: bool) -> list[float]:
    step = 1 if integer else 0.5
    out = []
    if allowed.low is not None:
        out.append(allowed.low if allowed.low_open and not integer else allowed.low - step)
    if allowed.high is not None:
        out.append(allowed.high if allowed.high_open and not integer else allowed.high + step)
    return out


@pytest.mark.parametrize("key,cls", HPARAMS, ids=[k for k, _ in HPARAMS])
def test_declared_ranges_hold_defaults_refuse_with_one_message_and_show_in_help(key, cls):
    base = _valid_values(key, cls)
    cls.from_dict(base)                                         # the defaults pass every declared range
    help_text = argparse.ArgumentParser()
    cls.add_args(help_text)
    text = " ".join(help_text.format_help().split())
    for field in dataclasses.fields(cls):
        allowed = field.metadata.get("range")
        if allowed is None:
            continue
        typ, _ = cls.field_types()[field.name]
        assert typ in (int, float), f"{key}: range on the {typ.__name__} field {field.name}"
        assert f"Must be {allowed}." in text, f"{key}: --help does not show {field.name}'s range"
        for value in _outside(allowed, typ is int):
            raw = str(int(value)) if typ is int else str(value)
            with pytest.raises(HparamError) as e:
                cls.from_dict({**base, field.name: raw})
            assert str(e.value) == str(range_error(field.name, cls.coerce(field.name, raw), allowed))


@pytest.mark.parametrize("key,cls", HPARAMS, ids=[k for k, _ in HPARAMS])
def test_a_redeclared_field_keeps_a_range(key, cls):
    """A subclass that redeclares a field (e.g. a new default) must declare its range again."""
    own = {f.name: f for f in dataclasses.fields(cls)}
    for base in cls.__mro__[1:]:
        if not dataclasses.is_dataclass(base):
            continue
        for field in dataclasses.fields(base):
            if field.metadata.get("range") is not None and field.name in own:
                assert own[field.name].metadata.get("range") is not None, \
                    f"{key}: {field.name} lost the range {field.metadata['range']} declared by {base.__name__}"


def test_the_soft_mask_training_strategy_refuses_a_negative_lambda(tmp_path, capsys):
    """`open_lth train --training_strategy=soft_mask --regularization_lambda=-1` trained (a penalty that
    rewards large masks) before its field declared a range."""
    root = tmp_path / "results"
    argv = ["train", "--default_hparams=digits_lenet_16", "--training_strategy=soft_mask",
            "--regularization_lambda=-1", "--training_steps=2it", "--threads=1", "--quiet", f"--root={root}"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip().endswith("error: invalid --regularization_lambda -1.0: must be >= 0")
    assert not root.exists()
