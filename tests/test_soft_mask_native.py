"""The one-pass CPU step of the soft mask (concave/native_step.py) trains to what the eager step trains
to, in every case it takes on, keeps torch.optim.SGD's state where torch keeps it (so a run resumes on
either path), and steps aside (eager) wherever it does not apply."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import open_lth_concave.concave  # noqa: F401  (registers the plug-in)
from open_lth_concave import cli
from open_lth_concave.concave import native_step
from open_lth_concave.concave.regularizers import Log, registry as regularizers
from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
from open_lth_concave.concave.target import SparsityTarget
from open_lth_concave.foundations import io, layout
from open_lth_concave.models.lenet import LeNet
from open_lth_concave.platform import native
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.training import loop

IGNORE = "fc.weight"
STEPS = 6
needs_compiler = pytest.mark.skipif(native.compiler() is None or not native.enabled(),
                                    reason="no C compiler here: the one-pass step cannot be built (eager is used)")


@pytest.fixture(autouse=True)
def _kernels_on():
    native.set_mode("auto")
    yield
    native.set_mode("auto")


def _batches(n: int = STEPS):
    g = torch.Generator().manual_seed(5)
    return [(torch.randn(16, 64, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(n)]


def _run(one_pass: bool, regularizer: str = "log", optimizer_kwargs: dict | None = None, target: bool = False,
         steps: int = STEPS):
    """(strategy, optimizer) of a small LeNet with entries pruned at an earlier level, bound or not, fresh."""
    torch.manual_seed(0)
    model = LeNet(64, [30, 20], 10)
    mask = Mask.ones_like(model)
    name = "fc_layers.1.weight"
    mask[name] = (torch.rand(mask[name].shape, generator=torch.Generator().manual_seed(3)) > 0.3).float()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in mask:
                p.mul_(mask[n])
    hparams = SoftMaskHparams(regularizer=regularizer, regularization_lambda=3e-3, mask_weight_decay=1e-3,
                              mask_lr=5.0, pruning_layers_to_ignore=IGNORE)
    goal = SparsityTarget(fraction=0.3, threshold=0.4, total_steps=steps) if target else None
    s = SoftMask(model, mask, hparams, target=goal)
    kwargs = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4} | (optimizer_kwargs or {})
    optimizer = torch.optim.SGD([{"params": list(model.parameters())}] + s.param_groups(), **kwargs)
    if one_pass:
        s.bind_optimizer(optimizer)
        assert s._native is not None
    return s, optimizer


def _train(s: SoftMask, optimizer, batches) -> None:
    for x, y in batches:   # the training loop's step
        loop.update(nn.functional.cross_entropy(s.forward(x), y), s, optimizer)


def _assert_same(a: SoftMask, b: SoftMask) -> None:
    torch.testing.assert_close(a.variable.detach(), b.variable.detach(), rtol=1e-5, atol=1e-6)
    for wa, wb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(wa.detach(), wb.detach(), rtol=1e-5, atol=1e-6)


OPTIMIZERS = {"momentum, weight decay": {}, "nesterov": {"nesterov": True}, "no momentum": {"momentum": 0.0},
              "dampening": {"dampening": 0.5}}


@needs_compiler
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("regularizer", sorted(regularizers.names()))
def test_one_pass_step_trains_as_the_eager_step(regularizer, optimizer):
    fast, fast_opt = _run(True, regularizer, OPTIMIZERS[optimizer])
    eager, eager_opt = _run(False, regularizer, OPTIMIZERS[optimizer])
    start = eager.variable.detach().clone()
    batches = _batches()
    _train(fast, fast_opt, batches)
    _train(eager, eager_opt, batches)
    assert fast.variable.grad is None and eager.variable.grad is not None   # the kernel did the mask's update
    _assert_same(fast, eager)
    assert float((fast.variable.detach() - start).abs().max()) > 1e-3                # the steps moved the masks
    assert bool((fast.variable[fast.alive == 0] == 0).all())                 # pruned entries stay exactly 0
    assert float(fast.variable.detach().min()) >= 0 and float(fast.variable.detach().max()) <= 1
    if OPTIMIZERS[optimizer].get("momentum", 0.9):
        torch.testing.assert_close(fast_opt.state[fast.variable]["momentum_buffer"],
                                   eager_opt.state[eager.variable]["momentum_buffer"], rtol=1e-5, atol=1e-6)


@needs_compiler
def test_one_pass_step_with_a_sparsity_target_trains_as_the_eager_step():
    fast, fast_opt = _run(True, target=True, steps=40)
    eager, eager_opt = _run(False, target=True, steps=40)
    batches = _batches(40)
    _train(fast, fast_opt, batches)
    _train(eager, eager_opt, batches)
    assert fast.target.scale != 1.0                       # the controller acted, on both paths alike
    assert fast.target.scale == pytest.approx(eager.target.scale, rel=1e-4)
    _assert_same(fast, eager)


@needs_compiler
def test_a_run_resumes_across_the_two_paths():
    """Checkpoint after 3 one-pass steps, resume eagerly (and the other way round): as 6 eager steps."""
    batches = _batches()
    reference, reference_opt = _run(False)
    _train(reference, reference_opt, batches)
    for first, second in ((True, False), (False, True)):
        a, a_opt = _run(first)
        _train(a, a_opt, batches[:3])
        b, b_opt = _run(second)
        b.model.load_state_dict(a.model.state_dict())
        b_opt.load_state_dict(a_opt.state_dict())
        b.load_state_dict(a.state_dict())
        if second:
            b.bind_optimizer(b_opt)   # as the loop does after loading a checkpoint
        _train(b, b_opt, batches[3:])
        _assert_same(b, reference)


def test_off_no_compiler_or_another_optimizer_take_the_eager_step(monkeypatch):
    native.set_mode("off")
    s, opt = _run(False)
    s.bind_optimizer(opt)
    assert s._native is None
    native.set_mode("auto")
    adam_model = _run(False)[0]
    adam = torch.optim.Adam([{"params": list(adam_model.model.parameters())}] + adam_model.param_groups(), lr=1e-3)
    adam_model.bind_optimizer(adam)
    assert adam_model._native is None
    # a compiler that fails: one warning naming the kernel, then the eager step, which still trains
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("OPEN_LTH_CACHE", str(pytest.importorskip("tempfile").mkdtemp()))
    s, opt = _run(False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s.bind_optimizer(opt)
    assert s._native is None
    assert any("native kernel 'soft_mask_step' unavailable" in str(w.message) for w in caught)
    before = s.variable.detach().clone()
    _train(s, opt, _batches(2))
    assert not torch.equal(before, s.variable.detach())


def test_a_regularizer_that_changes_the_derivative_does_not_inherit_the_c_expression():
    class Steeper(Log):
        def derivative(self, m):
            return 2 * super().derivative(m)

    class SameDerivative(Log):
        color = "#000000"

    assert native_step.expression_for(Steeper()) is None
    assert native_step.expression_for(SameDerivative()) == Log.native_derivative
    assert native_step.expression_for(Log()) == "c[1] / (m + c[0])"


@needs_compiler
@pytest.mark.parametrize("regularizer", sorted(regularizers.names()))
def test_each_c_expression_is_the_regularizers_derivative(regularizer):
    """With no loss gradient, lambda 1, no decay and a first momentum step, the kernel's momentum buffer is
    r'(m); with lr 0 the mask stays. Compared with `derivative` on a grid including 0, 1e-9 and 1."""
    reg = regularizers.get(regularizer)()
    step = native_step.MaskStep.for_regularizer(reg)
    m = torch.cat([torch.tensor([0.0, 1e-9, 1.0]), torch.linspace(0, 1, 101)])
    values, buf = m.clone(), torch.full_like(m, float("nan"))
    step.run(torch.zeros_like(m), torch.zeros_like(m), values, buf, None, 1.0, 0.0, 0.9, 0.0, True, False, 0.0)
    torch.testing.assert_close(buf, reg.derivative(m), rtol=1e-5, atol=1e-6)
    assert torch.equal(values, m)


@needs_compiler
@pytest.mark.slow
def test_the_training_loop_uses_it_and_matches_native_kernels_off(tmp_path, monkeypatch):
    calls = []
    run = native_step.MaskStep.run
    monkeypatch.setattr(native_step.MaskStep, "run", lambda self, *a: (calls.append(1), run(self, *a)))
    flags = ["lottery", "--default_hparams=digits_lenet_300_100", "--quiet", "--pruning_strategy=concave_log",
             "--pruning_mode=threshold", "--levels=1", "--training_steps=2ep",
             "--train_final_ticket_only"]
    # (threshold mode: the target controller reads an order statistic, which turns float-level differences
    # between the two paths into slightly different pressures; its bound step is compared in the unit tests)
    masks, used = {}, {}
    for name, extra in (("on", []), ("off", ["--native_kernels=off"])):
        root = tmp_path / name
        calls.clear()
        assert cli.main([*flags, "--root", str(root), *extra]) == 0
        used[name] = len(calls)
        (search,) = list(root.glob("lottery_*/replicate_1/level_1/pruning/search"))
        masks[name] = io.load_torch(search / layout.STRATEGY_FINAL)["relaxed_mask"]
    assert used["on"] > 0 and used["off"] == 0
    runs = list(tmp_path.glob("*/lottery_*/replicate_1"))
    assert len(runs) == 2 and runs[0].parent.name == runs[1].parent.name   # a platform flag: same experiment name
    assert masks["on"].keys() == masks["off"].keys()
    for n in masks["on"]:
        torch.testing.assert_close(masks["on"][n], masks["off"][n], rtol=1e-4, atol=1e-5)


@needs_compiler
def test_a_subclass_whose_penalty_reaches_the_mask_through_autograd_gets_both_gradients():
    """A mask gradient from elsewhere (an autograd penalty) must not be lost: the step then combines the
    leaves' gradients with it and runs eagerly, as an unbound strategy does."""
    class WithPenalty(SoftMask):
        def penalty(self):
            return 1e-3 * (self.variable ** 2).sum()

    def make(bound: bool):
        s, _ = _run(False)
        w = WithPenalty(s.model, s.mask, s.hparams)
        opt = torch.optim.SGD([{"params": list(w.model.parameters())}] + w.param_groups(), lr=0.05, momentum=0.9)
        if bound:
            w.bind_optimizer(opt)
            assert w._native is not None
        return w, opt

    (a, a_opt), (b, b_opt) = make(True), make(False)
    plain, plain_opt = _run(False)
    batches = _batches()
    _train(a, a_opt, batches)
    _train(b, b_opt, batches)
    _assert_same(a, b)
    _train(plain, plain_opt, batches)
    assert not torch.allclose(a.variable.detach(), plain.variable.detach(), atol=1e-4)   # the penalty acted


@needs_compiler
def test_a_channels_last_conv_net_trains_as_the_eager_step():
    """ResNet-8 (width 8) in channels_last, as CPU runs train it: the flat mask's per-layer views carry the
    weights' strides, and the kernel must walk each in its memory order."""
    from open_lth_concave.foundations.hparams import ModelHparams
    from open_lth_concave.models import get_model

    def make(bound: bool):
        model = get_model(ModelHparams(model_name="cifar_resnet_8_8", model_init="kaiming_normal",
                                       batchnorm_init="uniform"), (3, 32, 32), 10, torch.Generator().manual_seed(0))
        model = model.to(memory_format=torch.channels_last)
        s = SoftMask(model, Mask.ones_like(model), SoftMaskHparams(regularization_lambda=3e-3, mask_lr=5.0,
                                                                  pruning_layers_to_ignore=IGNORE))
        opt = torch.optim.SGD([{"params": list(model.parameters())}] + s.param_groups(), lr=0.05, momentum=0.9,
                              weight_decay=1e-4)
        if bound:
            s.bind_optimizer(opt)
            assert s._native is not None
        return s, opt

    convs = [w for w in make(False)[0]._weights if w.dim() == 4 and w.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last),
                torch.randint(0, 10, (8,), generator=g)) for _ in range(3)]
    (a, a_opt), (b, b_opt) = make(True), make(False)
    start = b.variable.detach().clone()
    _train(a, a_opt, batches)
    _train(b, b_opt, batches)
    _assert_same(a, b)
    assert float((a.variable.detach() - start).abs().max()) > 1e-3


def test_a_search_resumed_in_another_memory_format_continues_as_the_uninterrupted_one(tmp_path):
    """A checkpoint written by a channels_last run and resumed contiguous (a changed --memory_format, or a
    CPU run kept contiguous by the channels_last hazard resumed on CUDA): the parameters' momentum buffers
    come back with the parameters' strides, and the flat mask's momentum, saved in the channels_last
    layer order, is re-laid in the contiguous order; the resumed run then steps as the uninterrupted one."""
    from open_lth_concave.foundations.hparams import ModelHparams
    from open_lth_concave.foundations.step import Step
    from open_lth_concave.models import get_model
    from open_lth_concave.training import checkpoint
    from open_lth_concave.training.metric_logger import MetricLogger

    def make(channels_last: bool):
        model = get_model(ModelHparams(model_name="cifar_resnet_8_8", model_init="kaiming_normal",
                                       batchnorm_init="uniform"), (3, 32, 32), 10, torch.Generator().manual_seed(0))
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        s = SoftMask(model, Mask.ones_like(model), SoftMaskHparams(regularization_lambda=3e-3, mask_lr=5.0,
                                                                  pruning_layers_to_ignore=IGNORE))
        opt = torch.optim.SGD([{"params": list(model.parameters())}] + s.param_groups(), lr=0.05, momentum=0.9,
                              weight_decay=1e-4)
        return s, opt

    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(4)]
    a, a_opt = make(True)
    _train(a, a_opt, batches[:2])
    path = tmp_path / "checkpoint.pth"
    checkpoint.Checkpointer(path, a.model, a_opt, a, MetricLogger(), 0.0).save(Step(2, 100))
    b, b_opt = make(False)
    state, b, b_opt = checkpoint.resume(path, torch.device("cpu"), b.model, b_opt, b, Step(0, 100), Step(100, 100),
                                        "test", lambda: pytest.fail("the checkpoint must be usable"))
    assert state is not None and b.layout.standard_order
    assert a.layout.orders != b.layout.orders                       # the two runs lay the flat mask out differently
    saved = a.layout.to_dict(a_opt.state[a.variable]["momentum_buffer"])
    restored = b.layout.to_dict(b_opt.state[b.variable]["momentum_buffer"])
    for name in saved:
        assert torch.equal(saved[name], restored[name]), name
    for p in b.model.parameters():
        assert b_opt.state[p]["momentum_buffer"].stride() == p.stride()
    _train(a, a_opt, batches[2:])
    _train(b, b_opt, batches[2:])
    for name, value in a.relaxed_mask().items():
        torch.testing.assert_close(b.relaxed_mask()[name], value, rtol=1e-4, atol=1e-5)
