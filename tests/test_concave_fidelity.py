"""The paper's mask optimizer by default, the target-sparsity mode, and the numbers/warnings a search reports."""
from __future__ import annotations

import json
import math

import pytest
import torch

import open_lth_concave.concave  # noqa: F401  (registers the plug-in)
from open_lth_concave import cli
from open_lth_concave.concave.search import MaskOptimizer, decay_budget
from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
from open_lth_concave.concave.target import SparsityTarget
from open_lth_concave.foundations import io
from open_lth_concave.foundations.hparams import HparamError, TrainingHparams
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.pruning.strategy import registry as pruning_strategies
from tests.test_concave import IGNORE, fake_context, small_model, strategy_of

PAPER_TRAINING = TrainingHparams(optimizer_name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
                                 training_steps="3ep", milestone_steps="2ep", gamma=0.1)


def hparams(**flags):
    cls = pruning_strategies.get("concave_log")
    return cls.hparams_cls(pruning_strategy="concave_log", **flags)


def test_paper_mask_optimizer_is_the_runs_own_and_scaled_is_the_old_setting():
    paper = MaskOptimizer.resolve(hparams(), PAPER_TRAINING)
    assert (paper.lr, paper.momentum, paper.weight_decay) == (None, None, 1e-4)   # None: the training value
    assert hparams().alpha == 0.05
    scaled = MaskOptimizer.resolve(hparams(mask_optimizer="scaled"), PAPER_TRAINING)
    assert (scaled.lr, scaled.weight_decay) == (pytest.approx(10.0), 0.0)
    assert hparams(mask_optimizer="scaled").alpha == 0.4
    explicit = MaskOptimizer.resolve(hparams(mask_optimizer="scaled", mask_lr=0.3, mask_weight_decay=5e-4,
                                             mask_momentum=0.5, threshold=0.2), PAPER_TRAINING)
    assert (explicit.lr, explicit.momentum, explicit.weight_decay) == (0.3, 0.5, 5e-4)
    assert hparams(threshold=0.2).alpha == 0.2
    with pytest.raises(HparamError, match="--mask_optimizer"):
        hparams(mask_optimizer="adam").validate()


def test_decay_budget_sums_the_scheduled_lr_over_one_minus_momentum():
    # 10 iterations per epoch, steps 0..30, lr 0.1 then 0.01 from step 20: sum = 2.0 + 0.1 = 2.1
    budget = decay_budget(PAPER_TRAINING, 10, 0, 30, MaskOptimizer(lr=None, momentum=None, weight_decay=1e-4))
    assert budget["lr_sum_over_1_minus_momentum"] == pytest.approx(2.1 / 0.1)
    assert budget["decay_D"] == pytest.approx(1e-4 * 21.0)
    # the paper's ResNet-20 round: 85 epochs x 391 steps, drops at 56 and 71: D ~ 2.25
    paper = TrainingHparams(optimizer_name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, training_steps="85ep",
                            milestone_steps="56ep,71ep", gamma=0.1)
    d = decay_budget(paper, 391, 0, 85 * 391, MaskOptimizer(None, None, 1e-4))["decay_D"]
    assert d == pytest.approx(1e-4 * 0.1 * 391 * (56 + 15 * 0.1 + 14 * 0.01) / 0.1) and 2.2 < d < 2.3


@pytest.mark.slow
def test_sparsity_target_steers_a_synthetic_search_to_its_share():
    """A plant where mask i is held up by h_i and pushed down by c * lam: the controller must find the c
    at which the target share sits below alpha, and hold it (within the +-2 points we promise)."""
    g = torch.Generator().manual_seed(0)
    n, steps = 20_000, 4000
    hold = torch.rand(n, generator=g) * 1e-3
    m = torch.full((n,), 0.5)
    alive = torch.ones(n, dtype=torch.bool)
    for fraction in (0.2, 0.5):
        target = SparsityTarget(fraction=fraction, threshold=0.05, total_steps=steps)
        target.bind(alive)
        values = m.clone()
        for _ in range(steps):
            values = (values - 0.5 * (target.scale * 1e-4 - hold)).clamp(0, 1)
            target.observe(values)
        share = float((values < 0.05).float().mean())
        assert abs(share - fraction) <= 0.02, (fraction, share, target.scale)


def test_sparsity_target_state_round_trips_through_the_strategy_checkpoint():
    model = small_model()
    mask = Mask.ones_like(model)
    hp = SoftMaskHparams(regularization_lambda=1e-3, mask_weight_decay=1e-2, pruning_layers_to_ignore=IGNORE)
    a = SoftMask(model, mask, hp, target=SparsityTarget(0.3, 0.05, 100))
    assert a.optimizer_settings()["weight_decay"] == 0.0 and a.decay == 1e-2   # decay applied (scaled) in the step
    for _ in range(7):
        with torch.no_grad():
            a.variable.mul_(0.9)
        a.after_step()
    b = SoftMask(model, mask, hp, target=SparsityTarget(0.3, 0.05, 100))
    b.load_state_dict(a.state_dict())
    assert b.target.state_dict() == a.target.state_dict() and b.target.steps == 7
    # the step adds c * (lam r'(m) + decay m) to the mask gradient
    b.variable.grad = torch.zeros_like(b.variable)
    b.before_step()
    m = b.variable.detach()
    expected = b.target.scale * (1e-3 * b.regularizer.derivative(m) + 1e-2 * m)
    torch.testing.assert_close(b.variable.grad, expected)


def test_target_mode_prunes_below_alpha_but_never_more_than_the_target(tmp_path):
    model = small_model()
    ramp = lambda s: {n: torch.linspace(0, 1, v.numel()).view_as(v) for n, v in s.relaxed_mask().items()}
    ctx, _ = fake_context(tmp_path, 1, Mask.ones_like(model), ramp)
    strategy = strategy_of("concave_log", pruning_mode="target", pruning_fraction=0.2, threshold=0.5)
    new_mask = strategy.prune(ctx)
    prunable = 64 * 30 + 30 * 20
    assert prunable - sum(int(new_mask[n].sum()) for n in ("fc_layers.0.weight", "fc_layers.1.weight")) == \
        math.ceil(0.2 * prunable)                                       # ~50% are below alpha: capped at 20%
    metrics = json.loads((ctx.artifacts_dir / "search_metrics.json").read_text())
    assert metrics["share_below_threshold"] == pytest.approx(0.5, abs=0.01) and metrics["pruning_mode"] == "target"
    # fewer below alpha than the target: exactly those go
    ctx2, _ = fake_context(tmp_path / "b", 1, Mask.ones_like(model), ramp)
    mask2 = strategy_of("concave_log", pruning_mode="target", pruning_fraction=0.4, threshold=0.1).prune(ctx2)
    assert int(mask2["fc_layers.1.weight"].sum()) == int((torch.linspace(0, 1, 600) >= 0.1).sum())


def test_a_level_that_removes_almost_nothing_warns_naming_the_knobs(tmp_path, capsys):
    model = small_model()
    ctx, _ = fake_context(tmp_path, 1, Mask.ones_like(model), None)      # masks stay at 0.5
    strategy_of("concave_log").prune(ctx)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: level 1 removed only 0.0% of the surviving weights")
    assert "--pruning_mode=target" in err[0] and "--regularization_lambda" in err[0] and "--mask_optimizer=scaled" in err[0]
    ctx2, _ = fake_context(tmp_path / "b", 1, Mask.ones_like(model),
                           lambda s: {n: torch.full(v.shape, 0.01) for n, v in s.relaxed_mask().items()})
    with pytest.raises(Exception, match="every weight of layer"):
        strategy_of("concave_log").prune(ctx2)


def test_search_metrics_show_the_mask_optimizer_budget(tmp_path):
    model = small_model()
    ctx, _ = fake_context(tmp_path, 1, Mask.ones_like(model), None)
    ctx.training_hparams = PAPER_TRAINING   # the fake context's steps 0..10 hold 10 iterations per epoch
    strategy_of("concave_log").prune(ctx)
    metrics = json.loads((ctx.artifacts_dir / "search_metrics.json").read_text())
    # fake context: steps 0..10 at lr 0.1 (the drop at 2ep is later), momentum 0.9
    assert metrics["lr_sum_over_1_minus_momentum"] == pytest.approx(10.0)
    assert metrics["decay_D"] == pytest.approx(1e-3)
    assert metrics["mask_optimizer"] == {"name": "paper", "lr": 0.1, "momentum": None, "weight_decay": 1e-4}
    assert metrics["decay_block_top_median"] == pytest.approx(2 * 0.5 * math.exp(-1e-3))
    assert metrics["share_in_decay_block"] == 1.0 and metrics["share_exactly_0"] == 0.0
    r = 1 / ((0.5 + 0.1) * math.log(1.1 / 0.1))                  # log penalty's r'(0.5), epsilon 0.1
    assert metrics["penalty_travel_at_initial_mask"] == pytest.approx(1e-6 * 10.0 * r, rel=1e-5)


DIGITS = ["--default_hparams=digits_lenet_300_100", "--threads=1", "--quiet"]


@pytest.mark.slow
def test_default_concave_run_on_digits_warns_and_target_mode_lands_on_its_targets(tmp_path, capsys):
    """The faithful default on a short digits round moves no mask below alpha: each level says so in one
    line naming the knob. Target mode (with the scaled optimizer, whose masks spread) lands within 2 points."""
    root = tmp_path / "r"
    assert cli.main(["lottery", *DIGITS, "--pruning_strategy=concave_log", "--levels=1", "--training_steps=5ep",
                     "--root", str(root)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "level 1 removed only" in warnings[0] and "--pruning_mode=target" in warnings[0]
    assert cli.main(["lottery", *DIGITS, "--pruning_strategy=concave_log", "--levels=2", "--pruning_mode=target",
                     "--mask_optimizer=scaled", "--pruning_fraction=0.3", "--root", str(root)]) == 0
    capsys.readouterr()
    (rep,) = [p for p in root.glob("lottery_*/replicate_1") if (p / "level_2").exists()]
    for level in (1, 2):
        metrics = io.load_json(rep / f"level_{level}" / "pruning" / "search_metrics.json")
        before = sum(r["before"] for r in metrics["layers"].values())
        assert abs(metrics["removed"] / before - 0.3) <= 0.02, (level, metrics["removed"] / before)
        assert metrics["target_fraction"] == 0.3 and metrics["shrinkage_scale_final"] > 0
    assert cli.main(["summary", str(rep)]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("- level ")]
    assert len(notes) == 2 and all("target mode, alpha 0.4" in n and "mask optimizer scaled" in n and "D = 0" in n
                                   and "target 30.0%" in n for n in notes), notes


def test_summary_notes_survive_a_damaged_search_metrics_file(tmp_path):
    cls = pruning_strategies.get("concave_log")
    (tmp_path / "search_metrics.json").write_text("[1, 2")
    assert cls.level_notes(tmp_path) == []
    (tmp_path / "search_metrics.json").write_text('{"removed": "many", "decay_D": null, "mask_optimizer": 3}')
    (note,) = cls.level_notes(tmp_path)
    assert note.startswith("? mode, alpha -, removed -") and "D = -" in note
