"""Typed contracts between the core and the concave plug-in: the pruning context and its train result,
the mask hyperparameters declared once, one resolved penalty, and display attributes on strategy classes."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import open_lth_concave.concave  # noqa: F401  (registers the plug-in)
from open_lth_concave import jobs
from open_lth_concave.concave.mask_hparams import DEFAULT_THRESHOLD, MaskOptimizerHparams
from open_lth_concave.concave.regularizers import MaskPenalty
from open_lth_concave.concave.search import MaskSearchHparams
from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
from open_lth_concave.foundations.hparams import TrainingHparams
from open_lth_concave.foundations.step import Step
from open_lth_concave.models.lenet import LeNet
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.pruning.strategy import PruningContext, PruningStrategy
from open_lth_concave.pruning.strategy import registry as pruning_strategies
from open_lth_concave.report import names, plot
from open_lth_concave.training.strategy import TrainResult

MASK_FIELDS = [f.name for f in dataclasses.fields(MaskOptimizerHparams)]
SEARCHES = ["concave_l1", "concave_log", "concave_lq", "concave_mcp", "sigmoid_mask"]


def within(inner, outer) -> bool:
    """Range `inner` allows no value that `outer` refuses."""
    low_ok = outer.low is None or (inner.low is not None and (inner.low > outer.low or
                                                              (inner.low == outer.low and inner.low_open >= outer.low_open)))
    high_ok = outer.high is None or (inner.high is not None and (inner.high < outer.high or
                                                                 (inner.high == outer.high and inner.high_open >= outer.high_open)))
    return low_ok and high_ok


# ---- the mask hyperparameters: one declaration ---------------------------------------------------------
@pytest.mark.parametrize("cls", [SoftMaskHparams] + [pruning_strategies.get(n).hparams_cls for n in SEARCHES],
                         ids=["soft_mask"] + SEARCHES)
def test_every_mask_field_comes_from_the_one_mixin(cls):
    assert issubclass(cls, MaskOptimizerHparams)
    declared = {f.name: f for f in dataclasses.fields(MaskOptimizerHparams)}
    for f in dataclasses.fields(cls):
        if f.name in declared:   # the mixin's range, or a narrower one (sigmoid_mask: m0 < 1, its logit finite)
            assert within(f.metadata["range"], declared[f.name].metadata["range"]), (cls.__name__, f.name)
    assert set(MASK_FIELDS) <= {f.name for f in dataclasses.fields(cls)}


def test_the_soft_mask_defaults_are_what_a_default_search_resolves_to():
    search = MaskSearchHparams(pruning_strategy="concave_log", pruning_mode="threshold")
    soft = SoftMaskHparams()
    assert soft.threshold == search.alpha == DEFAULT_THRESHOLD["paper"]
    assert soft.initial_mask_value == search.initial_mask_value
    assert (soft.mask_lr, soft.mask_momentum) == (search.mask_lr, search.mask_momentum) == (None, None)


# names computed by the code before the mixin (git archive of 7410cd5+c235768, `jobs.describe`/`cli`)
NAMES = [
    ("train_eeac3032f3108e32b03e6d63e44020b0", ["train", "--training_strategy=soft_mask"]),
    ("train_eeac3032f3108e32b03e6d63e44020b0", ["train", "--training_strategy=soft_mask", "--threshold=0.05",
                                                "--mask_weight_decay=0"]),
    ("train_4b76bc9f6fb22f530d27d969ac7dd5f4", ["train", "--training_strategy=soft_mask", "--threshold=0.3", "--mask_lr=2",
                                                "--initial_mask_value=0.7", "--regularizer=l1"]),
    ("lottery_380853b7b62aa19b313bf64d2ae99111", ["lottery", "--pruning_strategy=concave_log"]),
    ("lottery_1a053f2ee59372d0176c5703f22eca4c", ["lottery", "--pruning_strategy=concave_log", "--threshold=0.4",
                                                  "--mask_optimizer=scaled", "--mask_weight_decay=0",
                                                  "--initial_mask_value=0.5"]),
    ("lottery_a7bbab5ea12ef191ebfd44fd810d573d", ["lottery", "--pruning_strategy=concave_l1", "--mask_lr=1",
                                                  "--mask_momentum=0.5", "--pruning_mode=fraction",
                                                  "--pruning_fraction=0.3"]),
    ("lottery_a46fca47214f5b95e543367ba97a5078", ["lottery", "--pruning_strategy=sigmoid_mask", "--threshold=0.5",
                                                  "--mask_weight_decay=0"]),
    ("lottery_d59f322706280bdc505b58890bea4289", ["lottery", "--pruning_strategy=sigmoid_mask", "--threshold=0.3",
                                                  "--mask_weight_decay=0.001"]),
]


@pytest.mark.parametrize("name, argv", NAMES, ids=[f"{i}" for i in range(len(NAMES))])
def test_experiment_names_of_mask_flags_are_unchanged(name, argv):
    command, *flags = argv
    assert jobs.describe(command, ["--default_hparams=digits_lenet_300_100", *flags]).hashname == name


# ---- one resolved penalty --------------------------------------------------------------------------------
def test_a_search_hands_its_soft_mask_one_resolved_penalty(tmp_path):
    cls = pruning_strategies.get("concave_log")
    search = cls(cls.hparams_cls(pruning_strategy="concave_log", epsilon=0.3, regularization_lambda=2e-3))
    ctx = context(tmp_path, train=None)
    assert search.resolve_auto(ctx)["pruning_mode"] == "target"     # a 10-step round without decay
    model = LeNet(64, [8], 10)
    strategy = search.training_strategy(ctx, None)(model, Mask.ones_like(model))
    assert strategy.mask_penalty.name == "log" and strategy.lam == 2e-3
    assert strategy.regularizer is strategy.mask_penalty.regularizer and strategy.regularizer.hparams.epsilon == 0.3
    assert (strategy.hparams.regularizer, strategy.hparams.regularization_lambda) == ("log", 2e-3)
    # a penalty that disagrees with the hyperparameters it comes with is refused
    with pytest.raises(ValueError, match="name the penalty log .* but were given l1"):
        SoftMask(model, Mask.ones_like(model), SoftMaskHparams(regularizer="log"), mask_penalty=MaskPenalty.resolve("l1"))


# ---- the typed context and its train result --------------------------------------------------------------
def context(tmp_path: Path, train, level: int = 1, mask: Mask | None = None) -> PruningContext:
    model = LeNet(64, [8], 10)
    return PruningContext(level=level, current_mask=mask or Mask.ones_like(model), artifacts_dir=tmp_path / "pruning",
                          previous_artifacts_dir=None, trained_model=lambda: pytest.fail("not needed"),
                          rewind_model=lambda: LeNet(64, [8], 10), train=train,
                          training_hparams=TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="1ep"),
                          start_step=Step(0, 10), end_step=Step(10, 10), replicate=3)


def test_a_search_prunes_from_the_strategy_its_train_call_returns(tmp_path):
    """`ctx.train` returns a TrainResult; the search reads the relaxed mask from the strategy in it (not
    from whichever strategy its factory built last, as a side-effect list did)."""
    built = []

    def train(model, mask, output_dir, make_strategy=None, label=""):
        trained = make_strategy(model, mask)          # the one that trains: masks spread over [0, 1]
        with torch.no_grad():
            trained.variable.copy_(torch.linspace(0, 1, trained.variable.numel()) * trained.alive)
        built.append(trained)
        built.append(make_strategy(model, mask))      # e.g. a fresh one made to load a state: left at 0.5
        return TrainResult(model, trained)

    cls = pruning_strategies.get("concave_log")
    search = cls(cls.hparams_cls(pruning_strategy="concave_log", threshold=0.25, pruning_layers_to_ignore="fc.weight",
                                 pruning_mode="threshold"))
    ctx = context(tmp_path, train)
    new = search.prune(ctx)
    survivors = sum(int(new[n].sum()) for n in new if n != "fc.weight")
    relaxed = built[0].relaxed_mask()
    assert survivors == sum(int((v >= 0.25).sum()) for n, v in relaxed.items())
    assert 0 < survivors < sum(v.numel() for n, v in relaxed.items())   # not the untouched 0.5 everywhere
    assert ctx.iterations_per_epoch == 10 and ctx.replicate == 3


# ---- display attributes ------------------------------------------------------------------------------------
def stats(strategy: str, **pruning):
    return SimpleNamespace(experiment=SimpleNamespace(strategy=strategy, hparams={"pruning_hparams": pruning}))


def test_plots_and_tables_take_names_colours_and_line_styles_from_the_strategy_classes():
    assert PruningStrategy.display_name is None and PruningStrategy.line_style == "-"
    used: set = set()
    assert plot._style(stats("concave_l1"), used) == {"color": "#d62728", "linestyle": "-", "marker": "s"}
    assert plot._style(stats("concave_l1", pruning_mode="fraction"), used) == \
        {"color": "#d62728", "linestyle": "--", "marker": "s"}          # the hard ablation: dashed
    assert plot._style(stats("concave_l1"), used)["color"] not in {"#d62728"}   # taken: the next free colour
    assert plot._style(stats("sparse_global", pruning_mode="fraction"), set()) == \
        {"color": "#1f77b4", "linestyle": "-", "marker": "o"}           # IMP has no such variant
    assert plot._style(stats("not_installed"), set()) == {"color": plot.PALETTE[0], "linestyle": "-", "marker": "o"}
    assert names.strategy_name("concave_mcp (pruning_mode=fraction)") == "Concave MCP (pruning_mode=fraction)"
    assert [names.strategy_name(n) for n in ("sparse_global", "concave_log", "sigmoid_mask", "not_installed")] == \
        ["IMP", "Concave log", "Sigmoid mask", "not_installed"]


def test_legends_take_their_symbols_and_always_shown_values_from_the_strategy_classes():
    runs = [stats("concave_log", pruning_strategy="concave_log", regularization_lambda=2e-6, epsilon=0.3, threshold=None,
                  pruning_mode="threshold"),
            stats("concave_l1", pruning_strategy="concave_l1", mask_optimizer="scaled", threshold=None),
            stats("sparse_global", pruning_strategy="sparse_global", pruning_fraction=0.3),
            stats("not_installed", pruning_strategy="not_installed", threshold=0.2)]
    assert plot.legend_labels(runs) == ["Concave log (λ 2e-06, ε 0.3, mode threshold, α 0.05)",
                                        "Concave ℓ1 (mask optimizer scaled, α 0.4)",
                                        "IMP (fraction 0.3)", "not_installed (threshold 0.2)"]
