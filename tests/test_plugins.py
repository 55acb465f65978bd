"""The plug-in seam: entry-point groups, an outside plug-in installed as a dist-info on a temporary path,
and the core with the bundled concave plug-in absent. Every run is a real `open_lth` process."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from open_lth_concave.pruning.mask import Mask

from conftest import REPO


# ---- a tiny outside package: a dataset and a model (group open_lth_concave.plugins, imported at start-up)
# and a pruning strategy (group open_lth_concave.pruning_strategies, imported when that registry is first asked)
OUTSIDE_REGISTER = '''
"""Two-class 4x4 stripes (top or bottom half bright) and an MLP family `outside_mlp_<width>`."""
import numpy as np
import torch
from torch import nn

from open_lth_concave.datasets.base import DatasetSpec, ImageData, register
from open_lth_concave.models.base import Model, ModelSpec, registry as models


def load(folder, train):
    rng = np.random.RandomState(0 if train else 1)
    n = 256 if train else 64
    labels = rng.randint(0, 2, size=n)
    images = rng.randint(0, 60, size=(n, 1, 4, 4))
    for i, c in enumerate(labels):
        images[i, 0, 2 * c:2 * c + 2] += 150
    return ImageData(torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels.astype(np.int64)))


register(DatasetSpec(name="outside_stripes", num_classes=2, image_shape=(1, 4, 4), mean=(0.41,), std=(0.3,),
                     augment=False, load=load, embedded=True))


class Mlp(Model):
    def __init__(self, width, classes):
        super().__init__()
        self.hidden = nn.Linear(16, width)
        self.out = nn.Linear(width, classes)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x.flatten(1))))

    @property
    def output_layer_names(self):
        return ["out.weight", "out.bias"]


@models.register_pattern(r"outside_mlp_(\\d+)", "outside_mlp_<width>")
def outside_mlp(match):
    width = int(match.group(1))
    return ModelSpec(name=match.group(0), build=lambda shape, classes: Mlp(width, classes), defaults={
        "dataset": {"dataset_name": "outside_stripes", "batch_size": 32},
        "model": {"model_name": match.group(0), "model_init": "kaiming_normal", "batchnorm_init": "uniform"},
        "training": {"optimizer_name": "sgd", "lr": 0.1, "training_steps": "3ep"},
        "pruning": {"pruning_strategy": "outside_random", "pruning_fraction": 0.5},
    })
'''

OUTSIDE_STRATEGY = '''
"""`outside_random`: remove exactly ceil(fraction x surviving) surviving weights chosen at random
(seeded by the replicate and the level, read from the typed pruning context)."""
import math
from dataclasses import dataclass

import torch

from open_lth_concave.foundations.hparams import PruningHparams, hp
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.pruning.strategy import PruningStrategy, registry


@dataclass(kw_only=True)
class OutsideRandomHparams(PruningHparams):
    pruning_fraction: float = hp(0.5, "Share of the surviving weights removed per level.")


@registry.register("outside_random")
class OutsideRandom(PruningStrategy):
    hparams_cls = OutsideRandomHparams
    needs_trained_model = False
    description = "Random pruning from an outside package."
    display_name = "Outside random"
    color = "#123456"

    def prune(self, ctx):
        generator = torch.Generator().manual_seed(1000 * ctx.replicate + ctx.level)
        names = list(ctx.current_mask)
        alive = torch.cat([ctx.current_mask[n].flatten() for n in names])
        where = torch.nonzero(alive, as_tuple=True)[0]
        drop = where[torch.randperm(where.numel(), generator=generator)[:math.ceil(self.hparams.pruning_fraction * where.numel())]]
        alive[drop] = 0
        out, start = {}, 0
        for n in names:
            size = ctx.current_mask[n].numel()
            out[n] = alive[start:start + size].view_as(ctx.current_mask[n]).clone()
            start += size
        return Mask(out)
'''


def install(site: Path, dist: str, modules: dict[str, str], entry_points: str) -> Path:
    """`dist` as an installed distribution on `site` (a package of `modules` plus its dist-info), no pip."""
    package = site / dist
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, text in modules.items():
        (package / f"{name}.py").write_text(textwrap.dedent(text))
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return site


def open_lth(*args: str, site: Path | None = None, root: Path | None = None, prelude: str = "",
             cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`open_lth ARGS` in a fresh process; `site` joins the path (as an installed package would); `prelude`
    runs first (e.g. to hide an entry point)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site)] + [p for p in [env.get("PYTHONPATH")] if p])
    if root is not None:
        env["OPEN_LTH_ROOT"] = str(root)
    code = prelude + "\nimport sys\nfrom open_lth_concave.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)


@pytest.fixture
def outside(tmp_path) -> Path:
    return install(tmp_path / "site", "lth_outside", {"register": OUTSIDE_REGISTER, "strategy": OUTSIDE_STRATEGY}, """
        [open_lth_concave.plugins]
        outside = lth_outside.register

        [open_lth_concave.pruning_strategies]
        outside_random = lth_outside.strategy
    """)


# ---- the groups ----------------------------------------------------------------------------------------
def test_entry_point_groups_are_named_in_the_plural_and_documented():
    from open_lth_concave.branches.base import registry as branches
    from open_lth_concave.concave.regularizers import registry as regularizers
    from open_lth_concave.datasets.base import registry as datasets
    from open_lth_concave.foundations.registry import PLUGINS_GROUP
    from open_lth_concave.models.base import registry as models
    from open_lth_concave.pruning.strategy import registry as pruning
    from open_lth_concave.training.strategy import registry as training
    groups = {r.entry_point_group for r in (datasets, models, pruning, training, branches, regularizers)}
    assert groups == {"open_lth_concave.datasets", "open_lth_concave.models", "open_lth_concave.pruning_strategies",
                      "open_lth_concave.training_strategies", "open_lth_concave.branches",
                      "open_lth_concave.regularizers"}
    readme = (REPO / "README.md").read_text()
    for group in groups | {PLUGINS_GROUP}:
        assert f"`{group}`" in readme, group
    # the bundled plug-in is declared through the same group an outside package uses
    declared = {ep.name: ep.value for ep in metadata.entry_points(group=PLUGINS_GROUP)}
    assert declared.get("concave") == "open_lth_concave.concave"
    upstream = {ep.name: ep.value for ep in metadata.entry_points(group="open_lth.plugins")}
    assert upstream.get("concave") == "open_lth_concave.upstream.plugin:register"


# ---- an outside plug-in --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.subprocess
def test_an_outside_plugin_adds_a_model_a_dataset_and_a_strategy_and_runs_a_lottery(outside, tmp_path):
    root = tmp_path / "results"
    shown = open_lth("lottery", "--default_hparams=outside_mlp_8", "--help", site=outside)
    assert shown.returncode == 0, shown.stderr
    assert "outside_random" in shown.stdout and "outside_mlp_<width>" in shown.stdout and "outside_stripes" in shown.stdout
    run = open_lth("lottery", "--default_hparams=outside_mlp_8", "--levels=2", "--threads=1", "--quiet",
                   site=outside, root=root)
    assert run.returncode == 0, run.stderr
    (exp,) = root.glob("lottery_*")
    rep = exp / "replicate_1"
    report = json.loads((rep / "report.json").read_text())["levels"]
    total = 16 * 8 + 8 * 2                                     # both weight tensors are prunable
    assert [r["unpruned"] for r in report] == [total, total - math.ceil(total / 2), total // 4]
    assert report[0]["test_accuracy"] > 0.9                     # the plug-in's data and model train
    masks = [Mask.load(rep / f"level_{level}" / "main" / "mask.pth") for level in range(3)]
    for before, after in zip(masks, masks[1:]):                 # each level prunes only survivors
        assert all(bool((after[n] <= before[n]).all()) for n in before)
    summary = open_lth("summary", str(exp), site=outside)
    assert summary.returncode == 0, summary.stderr
    assert "Outside random (outside_random)" in summary.stdout  # the strategy class's display name
    # without the package on the path its names are unknown, in the usual one line
    gone = open_lth("lottery", "--default_hparams=outside_mlp_8", "--levels=1", root=tmp_path / "other")
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1 and "outside_mlp_8" in gone.stderr


@pytest.mark.subprocess
def test_a_plugin_that_fails_to_load_is_one_line_naming_it(tmp_path):
    site = install(tmp_path / "site", "lth_broken", {"boom": "raise RuntimeError('the plug-in is broken')\n"}, """
        [open_lth_concave.plugins]
        broken = lth_broken.boom
    """)
    run = open_lth("lottery", "--help", site=site)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "plug-in 'broken' = 'lth_broken.boom'" in run.stderr and "lth_broken" in run.stderr
    assert "RuntimeError: the plug-in is broken" in run.stderr


# ---- the core without the concave plug-in --------------------------------------------------------------
WITHOUT_CONCAVE = '''
import importlib.metadata as md, sys
_entry_points = md.entry_points
def _hide(eps):
    return md.EntryPoints(e for e in eps if not e.value.startswith("open_lth_concave.concave"))
def entry_points(**kw):   # the concave plug-in is not installed ...
    eps = _entry_points(**kw)
    if isinstance(eps, dict):   # Python < 3.12 without a group: {group: its entry points}
        return md.SelectableGroups({g: _hide(v) for g, v in dict.items(eps)})
    return _hide(eps)
md.entry_points = entry_points
class NoConcave:          # ... and its package cannot be imported at all
    def find_spec(self, name, path=None, target=None):
        if name.startswith("open_lth_concave.concave"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoConcave())
'''


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_core_runs_without_the_concave_plugin(tmp_path):
    root = tmp_path / "results"
    shown = open_lth("lottery", "--default_hparams=digits_lenet_300_100", "--help", prelude=WITHOUT_CONCAVE)
    assert shown.returncode == 0, shown.stderr
    assert "sparse_global" in shown.stdout and "concave" not in shown.stdout
    run = open_lth("lottery", "--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--levels=1",
                   "--threads=1", "--quiet", root=root, prelude=WITHOUT_CONCAVE)
    assert run.returncode == 0, run.stderr
    (exp,) = root.glob("lottery_*")
    report = json.loads((exp / "replicate_1" / "report.json").read_text())["levels"]
    prunable = 64 * 300 + 300 * 100                              # fc.weight (1000) is ignored
    assert report[1]["unpruned"] == pytest.approx(prunable * 0.8 + 1000, abs=2) and report[0]["test_accuracy"] > 0.9
    for argv in (["lottery", "--default_hparams=digits_lenet_300_100", "--pruning_strategy=concave_log"],
                 ["train", "--default_hparams=digits_lenet_300_100", "--training_strategy=soft_mask"]):
        refused = open_lth(*argv, root=tmp_path / "refused", prelude=WITHOUT_CONCAVE)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        kind = "pruning strategy 'concave_log'" if "lottery" in argv else "training strategy 'soft_mask'"
        assert f"unknown {kind}; valid: " in refused.stderr
        assert "concave" not in refused.stderr.split("valid: ")[1] and "soft_mask" not in refused.stderr.split("valid: ")[1]
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").rglob("*.json"))


def test_a_source_tree_that_is_not_installed_loads_its_bundled_plugins(monkeypatch):
    """A bare machine with a copy of the tree and no installed metadata (the GPU machine): the package's own
    entry points come from the tree's pyproject.toml, so `concave` and the subcommands are there as when installed."""
    from importlib import metadata
    from open_lth_concave.foundations import registry

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(registry.metadata, "distribution", not_installed)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda: metadata.EntryPoints([]))
    monkeypatch.setattr(registry, "_installed", None)
    plugins = registry.installed_entry_points(registry.PLUGINS_GROUP)
    assert [(e.name, e.value) for e in plugins] == [("concave", "open_lth_concave.concave")]
    assert {e.name for e in registry.installed_entry_points("open_lth_concave.subcommands")} == {"illustrate", "upstream"}
    assert registry.load_entry_points(registry.PLUGINS_GROUP) == ["concave"]
