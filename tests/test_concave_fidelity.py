"""The paper's mask optimizer by default, the target-sparsity mode, and the numbers/warnings a search reports."""
from __future__ import annotations

import dataclasses
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
    paper = MaskOptimizer.resolve(hparams(pruning_mode="threshold"), PAPER_TRAINING)
    assert (paper.lr, paper.momentum, paper.weight_decay) == (None, None, 1e-4)   # None: the training value
    assert hparams(pruning_mode="threshold").alpha == hparams(pruning_mode="fraction").alpha == 0.05
    # auto: paper in the threshold and fraction modes, scaled in the target mode; unresolved while the mode is auto
    aimed = MaskOptimizer.resolve(hparams(pruning_mode="target"), PAPER_TRAINING)
    assert (aimed.lr, aimed.weight_decay) == (pytest.approx(10.0), 0.0) and hparams(pruning_mode="target").alpha == 0.4
    with pytest.raises(ValueError, match="auto"):
        hparams().alpha
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


def synthetic_search(fraction: float, hold: torch.Tensor, steps: int, lam: float = 1e-4, lr: float = 0.5,
                     concave: bool = False) -> tuple[SparsityTarget, torch.Tensor]:
    """A plant where mask i is held up by hold_i and pushed down by c * lam * r'(m) per unit of travel lr:
    m_i <- m_i - lr * (c * lam * r'(m_i) - hold_i), projected onto [0, 1]; r'(m) = 1 (l1) or the log
    penalty's 1 / ((m + 0.1) log 11) (concave: its pull grows six-fold as m falls)."""
    def derivative(m):
        return 1.0 / ((m + 0.1) * math.log(11.0)) if concave else torch.ones_like(m) if torch.is_tensor(m) else 1.0
    target = SparsityTarget(fraction=fraction, threshold=0.05, total_steps=steps, travel=lambda step: lr)
    alive = torch.ones(hold.numel(), dtype=torch.bool)
    target.bind(alive, lambda q: lam * float(derivative(torch.tensor(q))))
    values = torch.full_like(hold, 0.5)
    for _ in range(steps):
        values = (values - lr * (target.scale * lam * derivative(values) - hold)).clamp(0, 1)
        target.observe(values)
    return target, values


@pytest.mark.parametrize("concave", [False, True], ids=["l1", "log"])
@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_sparsity_target_steers_a_synthetic_search_to_its_share(fraction, concave):
    """Graded holds: the controller must find the pressure at which the target share sits below alpha by the
    masks' own choice (within the +-2 points we promise), without collapsing the rest (the masks above the
    target share stay well above alpha)."""
    hold = torch.rand(20_000, generator=torch.Generator().manual_seed(0)) * 1e-4
    target, values = synthetic_search(fraction, hold, 2000, concave=concave)
    share = float((values < 0.05).float().mean())
    assert abs(share - fraction) <= 0.02, (fraction, share, target.scale)
    assert target.outcome(int((values < 0.05).sum()), values.numel()) == "own choice" and not target.released
    assert float(values.quantile(fraction + 0.1)) > 0.05           # the next 10% did not fall through alpha with them
    # the weakest-held masks are the ones that went (the masks decided, not the order of the block)
    below = values < 0.05
    assert float(hold[below].max()) <= float(hold[~below].min()) + 1e-5


def test_sparsity_target_releases_the_pressure_when_the_masks_move_as_one_block():
    """Every mask held alike: the pressure can only move the whole block, so the controller must see that the
    masks above the target share travel with it, release the pressure (c = 0 from then on) and say so."""
    hold = torch.full((20_000,), 2e-5) + torch.rand(20_000, generator=torch.Generator().manual_seed(1)) * 1e-8
    target, values = synthetic_search(0.2, hold, 2000)
    assert target.released and target.scale == 0.0 and target.separation < 0.05
    assert float((values < 0.05).float().mean()) == 0.0                # the block was not pushed through alpha
    assert target.outcome(0, values.numel()) == "fallback"


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
    assert metrics["target_outcome"] == "capped"
    # fewer below alpha than the target: topped up to exactly the target count, lowest first
    ctx2, _ = fake_context(tmp_path / "b", 1, Mask.ones_like(model), ramp)
    mask2 = strategy_of("concave_log", pruning_mode="target", pruning_fraction=0.4, threshold=0.1).prune(ctx2)
    assert prunable - sum(int(mask2[n].sum()) for n in ("fc_layers.0.weight", "fc_layers.1.weight")) == \
        math.ceil(0.4 * prunable)
    assert json.loads((ctx2.artifacts_dir / "search_metrics.json").read_text())["target_outcome"] == "topped up"
    # within 2 points of the target: the masks' own choice, exactly those below alpha go
    ctx3, _ = fake_context(tmp_path / "c", 1, Mask.ones_like(model), ramp)
    mask3 = strategy_of("concave_log", pruning_mode="target", pruning_fraction=0.2, threshold=0.215).prune(ctx3)
    assert int(mask3["fc_layers.1.weight"].sum()) == int((torch.linspace(0, 1, 600) >= 0.215).sum())
    assert json.loads((ctx3.artifacts_dir / "search_metrics.json").read_text())["target_outcome"] == "own choice"


def test_a_level_that_removes_almost_nothing_warns_naming_the_knobs(tmp_path, capsys):
    model = small_model()
    ctx, _ = fake_context(tmp_path, 1, Mask.ones_like(model), None)      # masks stay at 0.5
    strategy_of("concave_log", pruning_mode="threshold").prune(ctx)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: level 1 removed only 0.0% of the surviving weights")
    assert "--pruning_mode=target" in err[0] and "--regularization_lambda" in err[0] and "--mask_optimizer=scaled" in err[0]
    ctx2, _ = fake_context(tmp_path / "b", 1, Mask.ones_like(model),
                           lambda s: {n: torch.full(v.shape, 0.01) for n, v in s.relaxed_mask().items()})
    with pytest.raises(Exception, match="every weight of layer"):
        strategy_of("concave_log", pruning_mode="threshold").prune(ctx2)


def test_search_metrics_show_the_mask_optimizer_budget(tmp_path):
    model = small_model()
    ctx, _ = fake_context(tmp_path, 1, Mask.ones_like(model), None)
    ctx.training_hparams = PAPER_TRAINING   # the fake context's steps 0..10 hold 10 iterations per epoch
    strategy_of("concave_log", pruning_mode="threshold").prune(ctx)
    metrics = json.loads((ctx.artifacts_dir / "search_metrics.json").read_text())
    # fake context: steps 0..10 at lr 0.1 (the drop at 2ep is later), momentum 0.9
    assert metrics["lr_sum_over_1_minus_momentum"] == pytest.approx(10.0)
    assert metrics["decay_D"] == pytest.approx(1e-3)
    assert metrics["mask_optimizer"] == {"name": "paper", "lr": 0.1, "momentum": None, "weight_decay": 1e-4}
    assert metrics["decay_block_top_median"] == pytest.approx(2 * 0.5 * math.exp(-1e-3))
    assert metrics["share_in_decay_block"] == 1.0 and metrics["share_exactly_0"] == 0.0
    # the block model beside the measured block: decay 1e-4 and the log pull over a travel of 10
    r = 1 / ((0.5 + 0.1) * math.log(1.1 / 0.1))
    assert metrics["block_model_end"] == pytest.approx(0.5 - 10.0 * (1e-4 * 0.5 + 1e-6 * r), rel=1e-4)
    assert metrics["decay_block_median"] == 0.5
    notes = pruning_strategies.get("concave_log").level_notes(ctx.artifacts_dir)
    assert "block model: an unheld mask ends at 0.499 (measured block median 0.5)" in notes[0], notes
    r = 1 / ((0.5 + 0.1) * math.log(1.1 / 0.1))                  # log penalty's r'(0.5), epsilon 0.1
    assert metrics["penalty_travel_at_initial_mask"] == pytest.approx(1e-6 * 10.0 * r, rel=1e-5)


DIGITS = ["--default_hparams=digits_lenet_300_100", "--threads=1", "--quiet"]


@pytest.mark.slow
def test_default_concave_run_on_digits_prunes_by_aiming_and_says_why(tmp_path, capsys):
    """The digits preset's rounds have no weight decay, so the paper's mask optimizer cannot bring a mask
    below alpha (the block model says 0.5 stays 0.5): the default (auto) aims at --pruning_fraction with
    the scaled optimizer, says so per level, records it, and lands within 2 points with a healthy search.
    The paper's threshold with that round, asked for explicitly, prunes nothing and warns naming the knobs."""
    root = tmp_path / "r"
    assert cli.main(["lottery", *DIGITS, "--pruning_strategy=concave_log", "--levels=2", "--pruning_fraction=0.3",
                     "--root", str(root)]) == 0
    out, err = capsys.readouterr()
    assert not [line for line in err.splitlines() if line.startswith("warning:")]
    settings = [line for line in out.splitlines() if line.startswith("Level ") and " settings: auto: " in line]
    assert len(settings) == 2 and all("target mode, mask optimizer scaled, alpha 0.4" in x and "ends near 0.5" in x
                                      for x in settings), settings
    (rep,) = list(root.glob("lottery_*/replicate_1"))
    for level in (1, 2):
        metrics = io.load_json(rep / f"level_{level}" / "pruning" / "search_metrics.json")
        before = sum(r["before"] for n, r in metrics["layers"].items() if n not in metrics["ignored_layers"])
        assert abs(metrics["removed"] / before - 0.3) <= 0.02, (level, metrics["removed"] / before)
        assert metrics["auto"]["pruning_mode"] == "target" and metrics["auto"]["mask_optimizer"] == "scaled"
        assert metrics["target_outcome"] in ("own choice", "capped", "topped up") and metrics["test_accuracy"] > 0.9
    assert cli.main(["summary", str(rep)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- level ")]
    assert len(notes) == 2 and all("target mode, alpha 0.4" in n and "chosen by auto" in n and "target 30.0%: " in n
                                   for n in notes), notes
    assert cli.main(["lottery", *DIGITS, "--pruning_strategy=concave_log", "--levels=1", "--training_steps=5ep",
                     "--pruning_mode=threshold", "--root", str(root)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "level 1 removed only" in warnings[0] and "--pruning_mode=target" in warnings[0]


def test_auto_keeps_the_paper_threshold_where_the_round_brings_unheld_masks_below_alpha(tmp_path):
    """The block model decides: with enough decay over the round (D = 3: 0.5 e^-3 = 0.025 < 0.05) auto is
    the paper's threshold mode with the paper's optimizer; without decay it aims (target, scaled)."""
    model = small_model()
    long_round = TrainingHparams(optimizer_name="sgd", lr=0.1, momentum=0.9, weight_decay=0.3, training_steps="1ep")
    ctx, _ = fake_context(tmp_path / "a", 1, Mask.ones_like(model), None)
    ctx.training_hparams = long_round                      # 10 steps x lr 0.1 / (1 - 0.9) = 10; D = 3
    strategy = strategy_of("concave_log")
    choice = strategy.resolve_auto(ctx)
    assert choice["pruning_mode"] == "threshold" and choice["mask_optimizer"] == "paper" and choice["threshold"] == 0.05
    assert "ends near 0.02" in choice["why"] and "D = 3" in choice["why"]
    ctx2, _ = fake_context(tmp_path / "b", 1, Mask.ones_like(model), None)
    ctx2.training_hparams = dataclasses.replace(long_round, weight_decay=0.0)
    choice = strategy_of("concave_log").resolve_auto(ctx2)
    assert (choice["pruning_mode"], choice["mask_optimizer"], choice["threshold"]) == ("target", "scaled", 0.4)
    # explicit flags are kept; only what is auto is resolved
    assert strategy_of("concave_log", pruning_mode="fraction").resolve_auto(ctx2) == {"mask_optimizer": "paper",
                                                                                     "threshold": 0.05}
    assert strategy_of("concave_log", pruning_mode="target", mask_optimizer="paper").resolve_auto(ctx2) is None


def test_the_block_model_integrates_decay_and_the_concave_pull():
    from open_lth_concave.concave.regularizers import MaskPenalty
    from open_lth_concave.concave.search import unheld_mask_end
    assert unheld_mask_end(0.5, 1e-4, 0.0, None, 22_500) == pytest.approx(0.5 * math.exp(-2.25), rel=3e-3)
    log = MaskPenalty.resolve("log")
    with_penalty = unheld_mask_end(0.5, 1e-4, log.lam, log.regularizer.derivative, 22_500)
    assert 0.03 < with_penalty < 0.5 * math.exp(-2.25) - 0.005      # the log pull adds to the decay
    assert unheld_mask_end(0.5, 0.0, 0.0, None, 1e6) == 0.5


def test_summary_notes_survive_a_damaged_search_metrics_file(tmp_path):
    cls = pruning_strategies.get("concave_log")
    (tmp_path / "search_metrics.json").write_text("[1, 2")
    (note,) = cls.level_notes(tmp_path)                      # damaged: named, not silently dropped
    assert note.startswith(f"cannot read {tmp_path / 'search_metrics.json'}") and "notes are missing" in note
    (tmp_path / "search_metrics.json").write_text("[1, 2]")
    assert cls.level_notes(tmp_path) == [f"cannot use {tmp_path / 'search_metrics.json'}: not a record of a search"]
    (tmp_path / "search_metrics.json").write_text('{"removed": "many", "decay_D": null, "mask_optimizer": 3}')
    (note,) = cls.level_notes(tmp_path)
    assert note.startswith("? mode, alpha -, removed -") and "D = -" in note
