"""The soft-mask training strategy and one level of the concave search, on small real models/data."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import open_lth_concave.concave  # noqa: F401  (registers the plug-in)
from open_lth_concave.concave.sigmoid_mask import SigmoidMask, SigmoidMaskHparams
from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
from open_lth_concave.foundations import io
from open_lth_concave.foundations.hparams import DatasetHparams, TrainingHparams
from open_lth_concave.foundations.step import Step
from open_lth_concave.training.experiment import make_data
from open_lth_concave.models.lenet import LeNet
from open_lth_concave.platform import Platform
from open_lth_concave.pruning.mask import Mask, apply_mask
from open_lth_concave.pruning.strategy import PruningContext, PruningError
from open_lth_concave.pruning.strategy import registry as pruning_strategies
from open_lth_concave.training import loop
from open_lth_concave.training.metric_logger import MetricLogger
from open_lth_concave.training.strategy import Standard, TrainResult
from open_lth_concave.training.strategy import registry as training_strategies

IGNORE = "fc.weight"


def small_model(seed: int = 0) -> LeNet:
    torch.manual_seed(seed)
    return LeNet(64, [30, 20], 10)


def half_pruned_mask(model: LeNet, seed: int = 1) -> Mask:
    g = torch.Generator().manual_seed(seed)
    mask = Mask.ones_like(model)
    mask["fc_layers.0.weight"] = (torch.rand(mask["fc_layers.0.weight"].shape, generator=g) > 0.5).float()
    return mask


@pytest.fixture(scope="module")
def digits():
    dataset = DatasetHparams(dataset_name="digits", batch_size=32)
    training = TrainingHparams(optimizer_name="sgd", lr=0.05, momentum=0.9, training_steps="2ep")
    return make_data(dataset, training, 1, Platform(device="cpu")), training


def test_registered_through_the_core_registries():
    assert {"soft_mask", "sigmoid_mask"} <= set(training_strategies.list())
    assert {"concave_l1", "concave_log", "concave_lq", "concave_mcp", "sigmoid_mask"} <= set(pruning_strategies.list())
    assert pruning_strategies.get("concave_log").hparams_cls.default_of("regularization_lambda") == 1e-6
    assert pruning_strategies.get("concave_l1").hparams_cls.default_of("regularization_lambda") == 3e-6
    assert pruning_strategies.get("concave_log").hparams_cls.default_of("epsilon") == 0.1
    assert "epsilon" not in pruning_strategies.get("concave_l1").hparams_cls.field_types()
    assert pruning_strategies.get("concave_log").needs_trained_model is False


def test_a_new_regularizer_gets_a_strategy_for_free():
    from open_lth_concave.concave.regularizers import L1, registry
    if "test_half_l1" not in registry.list():
        registry.register("test_half_l1")(type("HalfL1", (L1,), {"default_lambda": 5e-6}))
    strategy = pruning_strategies.get("concave_test_half_l1")
    assert strategy.hparams_cls.default_of("regularization_lambda") == 5e-6
    assert "concave_test_half_l1" in pruning_strategies.list()


def test_one_flat_parameter_with_per_layer_views():
    model = small_model()
    s = SoftMask(model, Mask.ones_like(model), SoftMaskHparams(pruning_layers_to_ignore=IGNORE))
    assert s.variable.numel() == 64 * 30 + 30 * 20                      # fc.weight keeps plain weights
    assert s.layout.names == ["fc_layers.0.weight", "fc_layers.1.weight"]
    assert [g["params"] for g in s.param_groups()] == [[s.variable]]
    assert s.param_groups()[0]["weight_decay"] == 0.0 and "lr" not in s.param_groups()[0]
    relaxed = s.relaxed_mask()
    assert set(relaxed) == set(s.layout.names) and float(relaxed["fc_layers.1.weight"].mean()) == 0.5


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(1e-3, 1e4), lr=st.floats(1e-3, 100.0), seed=st.integers(0, 2**16))
def test_projection_keeps_masks_in_unit_interval_and_pruned_at_zero(scale, lr, seed):
    model = small_model()
    mask = half_pruned_mask(model)
    s = SoftMask(model, mask, SoftMaskHparams(mask_lr=lr, pruning_layers_to_ignore=IGNORE))
    optimizer = torch.optim.SGD(s.param_groups(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        optimizer.zero_grad()
        s.variable.backward(torch.randn(s.variable.shape, generator=g) * scale)
        s.before_step()   # as the loop does: penalty gradient added, pruned entries' gradient zeroed
        optimizer.step()
        s.after_step()
        assert float(s.variable.detach().min()) >= 0.0 and float(s.variable.detach().max()) <= 1.0
        assert bool((s.relaxed_mask()["fc_layers.0.weight"][mask["fc_layers.0.weight"] == 0] == 0).all())


def train_job(tmp_path: Path, model, mask, data, training, make_strategy, name: str) -> Path:
    out = tmp_path / name
    job = loop.TrainJob(out, model, mask, data.train, data.test, training, Step.zero(data.iterations_per_epoch),
                        Step.from_str(training.training_steps, data.iterations_per_epoch), Platform(device="cpu"),
                        make_strategy=make_strategy, quiet=True)
    loop.train(job)
    return out


def test_lambda_zero_frozen_unit_mask_reproduces_standard_training(tmp_path, digits):
    """Evidence the plug-in changes nothing else: same seed, same data order -> same weights and losses."""
    data, training = digits
    model_a, model_b = small_model(3), small_model(3)
    mask = half_pruned_mask(model_a)
    apply_mask(model_a, mask)
    apply_mask(model_b, mask)
    out_a = train_job(tmp_path, model_a, mask, data, training, Standard, "standard")
    hp = SoftMaskHparams(regularization_lambda=0.0, initial_mask_value=1.0, mask_lr=0.0,
                         pruning_layers_to_ignore=IGNORE)
    made = []
    out_b = train_job(tmp_path, model_b, mask, data, training,
                      lambda m, k: made.append(SoftMask(m, k, hp)) or made[-1], "soft")
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    losses_a = MetricLogger.load(out_a / "logger").get("train_loss")
    losses_b = MetricLogger.load(out_b / "logger").get("train_loss")
    assert len(losses_a) == 2 and [i for i, _ in losses_a] == [i for i, _ in losses_b]
    assert [v for _, v in losses_a] == pytest.approx([v for _, v in losses_b], rel=1e-6)
    frozen = made[0].variable.detach()
    assert float(frozen.min()) == 0.0 and float(frozen.max()) == 1.0  # frozen


def test_search_moves_masks_keeps_pruned_at_zero_and_resumes_exactly(tmp_path, digits):
    data, training = digits
    model = small_model(4)
    mask = half_pruned_mask(model)
    apply_mask(model, mask)
    hp = SoftMaskHparams(regularizer="log", regularization_lambda=1e-3, mask_lr=5.0, pruning_layers_to_ignore=IGNORE)
    made = []
    out = train_job(tmp_path, model, mask, data, training, lambda m, k: made.append(SoftMask(m, k, hp)) or made[-1], "s")
    relaxed = made[-1].relaxed_mask()
    pruned = mask["fc_layers.0.weight"] == 0
    assert bool((relaxed["fc_layers.0.weight"][pruned] == 0).all())
    assert bool((model.state_dict()["fc_layers.0.weight"][pruned] == 0).all())
    alive = relaxed["fc_layers.0.weight"][~pruned]
    assert float(alive.std()) > 0.01 and float(alive.min()) >= 0 and float(alive.max()) <= 1
    logged = MetricLogger.load(out / "logger")
    assert logged.last("mask_mean") == pytest.approx(float(torch.cat([alive, relaxed["fc_layers.1.weight"].flatten()]).mean()), rel=1e-5)
    # state round trip: a fresh strategy loading the saved state holds the same mask
    fresh = SoftMask(small_model(4), mask, hp)
    fresh.load_state_dict(io.load_torch(out / "strategy_final.pth"))
    torch.testing.assert_close(fresh.relaxed_mask(), relaxed)


# ---- one pruning level through a fake context: carry-over, thresholding, fraction, dead layer ----------
def fake_context(tmp_path: Path, level: int, mask: Mask, set_values=None, previous: Path | None = None):
    """A PruningContext whose `train` only builds the strategy (records it) and sets the mask values."""
    seen = {}

    def train(model, mask_, output_dir, make_strategy=None, label=""):
        strategy = make_strategy(model, mask_)
        seen["start"] = strategy.relaxed_mask()
        seen["strategy"] = strategy
        if set_values is not None:
            with torch.no_grad():
                strategy.variable.copy_(strategy.layout.flatten(set_values(strategy)) * strategy.alive)
        return TrainResult(model, strategy)

    training = TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="1ep")
    ctx = PruningContext(level=level, current_mask=mask, artifacts_dir=tmp_path / f"level_{level}" / "pruning",
                         previous_artifacts_dir=previous, trained_model=lambda: pytest.fail("needs no trained model"),
                         rewind_model=lambda: small_model(0), train=train,
                         training_hparams=training, start_step=Step(0, 10), end_step=Step(10, 10))
    return ctx, seen


def strategy_of(name: str, **flags):
    cls = pruning_strategies.get(name)
    return cls(cls.hparams_cls(pruning_strategy=name, pruning_layers_to_ignore=IGNORE, **flags))


def ramp(strategy) -> dict[str, torch.Tensor]:
    """Mask values 0..1 spread evenly over each layer's entries."""
    return {n: torch.linspace(0, 1, v.numel()).view_as(v) for n, v in strategy.relaxed_mask().items()}


def test_threshold_prunes_below_alpha_and_next_level_starts_from_relaxed_mask(tmp_path):
    model = small_model()
    mask = Mask.ones_like(model)
    strategy = strategy_of("concave_log", threshold=0.25, pruning_mode="threshold")
    ctx, seen = fake_context(tmp_path, 1, mask, ramp)
    new_mask = strategy.prune(ctx)
    assert float(seen["start"]["fc_layers.0.weight"].unique()) == 0.5          # level 1: initial value
    group = seen["strategy"].param_groups()[0]
    assert "lr" not in group and "momentum" not in group and group["weight_decay"] == 0.0  # paper: as training
    values = ramp(seen["strategy"])
    for n in ("fc_layers.0.weight", "fc_layers.1.weight"):
        assert torch.equal(new_mask[n], (values[n] >= 0.25).float())
    assert bool(new_mask["fc.weight"].all())                                     # ignored layer untouched
    relaxed = io.load_torch(ctx.artifacts_dir / "relaxed_mask.pth")
    assert torch.equal(relaxed["fc_layers.1.weight"], values["fc_layers.1.weight"] * new_mask["fc_layers.1.weight"])
    metrics = json.loads((ctx.artifacts_dir / "search_metrics.json").read_text())
    prunable = 64 * 30 + 30 * 20
    assert metrics["removed"] == prunable - sum(int(new_mask[n].sum()) for n in relaxed)
    assert metrics["removed"] == pytest.approx(0.25 * prunable, abs=3)
    assert sum(metrics["mask_histogram"]["counts"]) == prunable and len(metrics["mask_histogram"]["counts"]) == 20
    assert metrics["layers"]["fc.weight"]["remaining"] == 200 and metrics["total"] == prunable + 200
    # level 2 starts from level 1's thresholded relaxed mask
    ctx2, seen2 = fake_context(tmp_path, 2, new_mask, None, previous=ctx.artifacts_dir)
    mask2 = strategy.prune(ctx2)
    torch.testing.assert_close(seen2["start"], relaxed)
    assert torch.equal(mask2["fc_layers.0.weight"], new_mask["fc_layers.0.weight"])  # nothing moved: same mask


def test_fraction_mode_removes_exactly_the_requested_count(tmp_path):
    model = small_model()
    mask = half_pruned_mask(model)
    strategy = strategy_of("concave_l1", pruning_mode="fraction", pruning_fraction=0.3)
    ctx, _ = fake_context(tmp_path, 1, mask, lambda s: {n: torch.rand(v.shape) for n, v in s.relaxed_mask().items()})
    new_mask = strategy.prune(ctx)
    surviving = int(mask["fc_layers.0.weight"].sum() + mask["fc_layers.1.weight"].sum())
    _, before = mask.numpy_counts()
    _, after = new_mask.numpy_counts()
    assert before - after == math.ceil(0.3 * surviving)
    assert bool((new_mask["fc_layers.0.weight"] <= mask["fc_layers.0.weight"]).all())


def test_a_layer_entirely_below_alpha_is_an_error_naming_layer_and_level(tmp_path):
    model = small_model()

    def kill_second_layer(s):
        values = {n: torch.full(v.shape, 0.9) for n, v in s.relaxed_mask().items()}
        values["fc_layers.1.weight"] = torch.full_like(values["fc_layers.1.weight"], 0.01)
        return values
    ctx, _ = fake_context(tmp_path, 1, Mask.ones_like(model), kill_second_layer)
    with pytest.raises(PruningError, match=r"level 1: every weight of layer fc_layers\.1\.weight"):
        strategy_of("concave_log", pruning_mode="threshold").prune(ctx)


def test_missing_previous_relaxed_mask_is_an_error(tmp_path):
    model = small_model()
    ctx, _ = fake_context(tmp_path, 2, Mask.ones_like(model), None, previous=tmp_path / "nowhere")
    from open_lth_concave.foundations.io import CorruptFileError   # names the file and what to move (no search to redo it from)
    with pytest.raises(CorruptFileError, match="missing file .*relaxed_mask.pth; it cannot be recomputed: move"):
        strategy_of("concave_log", pruning_mode="threshold").prune(ctx)


# ---- sigmoid ablation ------------------------------------------------------------------------------
def test_sigmoid_mask_follows_continuous_sparsification(tmp_path):
    """m = sigmoid(beta s) / sigmoid(s0) starts at 1; beta reaches beta_final at the search's last epoch;
    penalty lambda * sum m; prune sigmoid(beta_final s) < alpha (0.5: keep s >= 0); the next level starts
    from min(beta_final s, s0); scores have no weight decay and the training lr."""
    model = small_model()
    hp = SigmoidMaskHparams(pruning_strategy="sigmoid_mask", initial_mask_value=0.3, pruning_layers_to_ignore=IGNORE)
    s = SigmoidMask(model, Mask.ones_like(model), hp, start_epoch=2, total_epochs=12)
    torch.testing.assert_close(s.mask_values(), torch.ones_like(s.variable))      # rescaled: starts at 1
    assert float(s.variable[0].detach()) == pytest.approx(math.log(0.3 / 0.7))              # s0 = logit(0.3)
    for epoch, expected in ((2, 1.0), (7, 200 ** (5 / 9)), (11, 200.0)):
        s.on_epoch_start(epoch, 12)
        assert s.beta == pytest.approx(expected)
    assert float(s.penalty().detach()) == pytest.approx(1e-8 * float(s.mask_values().detach().sum()))
    strategy = pruning_strategies.get("sigmoid_mask")(SigmoidMaskHparams(
        pruning_strategy="sigmoid_mask", initial_mask_value=0.6, pruning_layers_to_ignore=IGNORE))
    scores = lambda st_: {n: torch.linspace(-0.1, 0.1, v.numel()).view_as(v) for n, v in st_.relaxed_mask().items()}
    ctx, seen = fake_context(tmp_path, 1, Mask.ones_like(model), scores)
    new_mask = strategy.prune(ctx)
    group = seen["strategy"].param_groups()[0]
    assert group["weight_decay"] == 0.0 and "lr" not in group                     # training lr, no decay
    n = "fc_layers.1.weight"
    grid = torch.linspace(-0.1, 0.1, 600).view(20, 30)
    assert torch.equal(new_mask[n], (grid >= 0).float())                          # s >= 0 survives
    carried = io.load_torch(ctx.artifacts_dir / "mask_scores.pth")[n]
    s0 = math.log(0.6 / 0.4)
    torch.testing.assert_close(carried, torch.clamp(200 * grid, max=s0) * (grid >= 0))  # survivors: min(200 s, s0)
    assert 0 < int((carried[grid >= 0] < s0).sum()) < int((grid >= 0).sum())     # both sides of the clamp occur
    assert (ctx.artifacts_dir / "relaxed_mask.pth").exists()


def test_soft_mask_step_gradients_equal_autograd_of_the_objective():
    """The fast step (custom masked-weight backward + analytic penalty gradient in before_step) gives
    the same gradients as autograd through loss + lambda * sum r(m), pruned entries included."""
    model = small_model()
    mask = Mask.ones_like(model)
    name = "fc_layers.1.weight"
    mask[name] = (torch.rand(mask[name].shape, generator=torch.Generator().manual_seed(3)) > 0.3).float()
    hp = SoftMaskHparams(regularizer="log", regularization_lambda=1e-2, pruning_layers_to_ignore=IGNORE)
    s = SoftMask(model, mask, hp)
    with torch.no_grad():
        s.variable.copy_(torch.rand(s.variable.shape, generator=torch.Generator().manual_seed(4)) * s.alive)
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(6))
    torch.nn.functional.cross_entropy(s.forward(x), y).backward()
    s.before_step()
    fast_mask_grad = s.variable.grad.clone()
    fast_weight_grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    m = s.variable.detach().clone().requires_grad_(True)
    for p in model.parameters():
        p.grad = None
    params = dict(model.named_parameters())
    masked = {n: params[n] * v for n, v in zip(s.layout.names, s.layout.views(m))}
    loss = torch.nn.functional.cross_entropy(torch.func.functional_call(model, masked, (x,)), y)
    (loss + 1e-2 * s.regularizer.value(m).sum()).backward()
    expected = m.grad * s.alive   # entries pruned earlier get no gradient
    torch.testing.assert_close(fast_mask_grad, expected)
    assert bool((fast_mask_grad[s.alive == 0] == 0).all()) and bool((s.alive == 0).any())
    for n, p in model.named_parameters():
        torch.testing.assert_close(fast_weight_grads[n], p.grad)


def _small_resnet(channels_last: bool):
    from open_lth_concave.foundations.hparams import ModelHparams
    from open_lth_concave.models import get_model
    model = get_model(ModelHparams(model_name="cifar_resnet_8", model_init="kaiming_normal", batchnorm_init="uniform"),
                      (3, 8, 8), 10, torch.Generator().manual_seed(0))
    return model.to(memory_format=torch.channels_last) if channels_last else model


def test_flat_mask_follows_channels_last_weights_and_state_moves_between_layouts():
    """With channels_last conv weights every per-layer view has its weight's strides (so the step is
    one _foreach call with no re-layout); what leaves the strategy is in standard order either way."""
    cl, plain = _small_resnet(True), _small_resnet(False)
    mask = Mask.ones_like(plain)
    conv = next(n for n in mask if mask[n].dim() == 4)
    mask[conv] = (torch.rand(mask[conv].shape, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    values = {n: torch.rand(mask[n].shape, generator=torch.Generator().manual_seed(i)) * mask[n]
              for i, n in enumerate(mask) if n != "fc.weight"}
    hp = SoftMaskHparams(pruning_layers_to_ignore="fc.weight")
    s_cl, s_plain = SoftMask(cl, mask, hp, initial_mask=values), SoftMask(plain, mask, hp, initial_mask=values)
    assert not s_cl.layout.standard_order and s_plain.layout.standard_order
    params = dict(cl.named_parameters())
    for name, view in zip(s_cl.layout.names, s_cl.layout.views(s_cl.variable)):
        assert view.stride() == params[name].stride(), name   # exactly, as DDP's buckets want
    for a, b in ((s_cl.relaxed_mask(), s_plain.relaxed_mask()), (s_cl.relaxed_mask(), values)):
        assert all(torch.equal(a[n], b[n]) and a[n].is_contiguous() for n in b)
    # a checkpoint written by one layout resumes in the other, per layer
    s_plain.load_state_dict(s_cl.state_dict())
    assert all(torch.equal(s_plain.relaxed_mask()[n], values[n]) for n in values)
    # and an older checkpoint (one flat tensor in standard order) still loads
    s_cl.load_state_dict({"relaxed_mask": torch.cat([values[n].reshape(-1) for n in s_cl.layout.names])})
    assert all(torch.equal(s_cl.relaxed_mask()[n], values[n]) for n in values)


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_soft_mask_gradients_equal_autograd(channels_last):
    model = _small_resnet(channels_last)
    s = SoftMask(model, Mask.ones_like(model), SoftMaskHparams(regularization_lambda=1e-2,
                                                               pruning_layers_to_ignore="fc.weight"))
    with torch.no_grad():
        s.variable.copy_(torch.rand(s.variable.shape, generator=torch.Generator().manual_seed(4)))
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(6))
    torch.nn.functional.cross_entropy(s.forward(x), y).backward()
    s.before_step()
    fast = s.layout.to_dict(s.variable.grad)
    params = dict(model.named_parameters())
    for n in s.layout.names:   # weight gradients keep the weights' layout (no copy on accumulation)
        assert params[n].grad.stride() == params[n].stride(), n
    fast_weights = {n: p.grad.clone() for n, p in params.items()}
    m = {n: v.clone().requires_grad_(True) for n, v in s.relaxed_mask().items()}
    for p in model.parameters():
        p.grad = None
    masked = {n: params[n] * m[n] for n in s.layout.names}
    loss = torch.nn.functional.cross_entropy(torch.func.functional_call(model, masked, (x,)), y)
    (loss + 1e-2 * sum(s.regularizer.value(v).sum() for v in m.values())).backward()
    for n in s.layout.names:
        torch.testing.assert_close(fast[n], m[n].grad, rtol=1e-4, atol=1e-6)
    for n, p in params.items():
        torch.testing.assert_close(fast_weights[n], p.grad, rtol=1e-4, atol=1e-6)
