"""A regularizer's own hyperparameters (`--epsilon`, `--q`, `--mcp_gamma`, ...) reach the penalty the
mask search differentiates: from the command line, through the `concave_<name>` pruning strategy, to
the gradient its training strategy adds to the mask before each step.

Parametrized over the regularizer registry, so a newly registered penalty is covered without editing
this file."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from open_lth_concave import jobs
from open_lth_concave.training.experiment import make_model
from open_lth_concave.plugins import load_core
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.pruning.strategy import PruningContext

load_core()
from open_lth_concave.concave.regularizers import registry as regularizers  # noqa: E402

BASE = ["--default_hparams=digits_lenet_300_100", "--levels=1", "--quiet", "--pruning_mode=threshold"]   # the penalty at scale 1


def other_value(cls, name: str):
    """A valid value of field `name` of hyperparameter class `cls` that differs from its default."""
    default = cls.default_of(name)
    typ, _ = cls.field_types()[name]
    if typ is bool:
        candidates = [not default]
    elif typ is int:
        candidates = [default + 1, default - 1, default * 2]
    else:
        candidates = [default * 2, default / 2, default + 0.25, default - 0.25, default * 0.9, default * 1.1]
    for value in candidates:
        if value == default:
            continue
        try:
            cls(**{name: value}).validate()
        except ValueError:
            continue
        return value
    raise AssertionError(f"no valid non-default value found for {cls.__name__}.{name}")


CASES = [(reg, f.name) for reg in regularizers.list() for f in dataclasses.fields(regularizers.get(reg).hparams_cls)]


def mask_gradient(root, regularizer: str, *flags: str) -> tuple[torch.Tensor, torch.Tensor, object]:
    """(penalty gradient the search's training strategy adds to its mask, the mask, the pruning hparams)."""
    runner = jobs.build("lottery", [*BASE, f"--pruning_strategy=concave_{regularizer}", "--root", str(root),
                                    *flags]).runner
    runner.setup()
    model = make_model(runner.desc.model_hparams, runner.data.spec, 1)
    mask = Mask.ones_like(model)
    ctx = PruningContext(level=1, current_mask=mask, artifacts_dir=root / "pruning", previous_artifacts_dir=None,
                         trained_model=lambda: model, rewind_model=lambda: model, train=None,
                         training_hparams=runner.desc.training_hparams, start_step=runner.start_step,
                         end_step=runner.end_step)
    strategy = runner.strategy.training_strategy(ctx, None)(model, mask)
    with torch.no_grad():   # mask values spread over (0, 1), where every penalty's derivative varies
        strategy.variable.copy_(torch.linspace(0.02, 0.98, strategy.variable.numel()))
    strategy.variable.grad = torch.zeros_like(strategy.variable)
    strategy.before_step()
    return strategy.variable.grad.detach().clone(), strategy.variable.detach().clone(), runner.desc.pruning_hparams


def test_every_regularizer_with_hyperparameters_is_covered():
    assert {"epsilon", "q", "mcp_gamma"} <= {field for _, field in CASES}


@pytest.mark.parametrize("regularizer, field", CASES)
def test_a_non_default_regularizer_hyperparameter_changes_the_mask_gradient(root, regularizer, field):
    reg_cls = regularizers.get(regularizer)
    value = other_value(reg_cls.hparams_cls, field)
    default_grad, m, _ = mask_gradient(root, regularizer)
    grad, m2, hparams = mask_gradient(root, regularizer, f"--{field}={value}")
    assert getattr(hparams, field) == value and torch.equal(m, m2)
    assert default_grad.abs().sum() > 0
    assert not torch.allclose(grad, default_grad, rtol=1e-3, atol=0)
    # ... and it is exactly lambda x r'(m) of the penalty with that value (same lambda as the default run)
    default_r = reg_cls(reg_cls.hparams_cls()).derivative(m.double())
    changed_r = reg_cls(reg_cls.hparams_cls(**{field: value})).derivative(m.double())
    torch.testing.assert_close(grad.double() * default_r, default_grad.double() * changed_r, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("regularizer", regularizers.list())
def test_every_regularizer_adds_its_own_penalty_gradient(root, regularizer):
    """Covers the regularizers without hyperparameters too: the gradient is lambda x r'(m) of that penalty."""
    grad, m, hparams = mask_gradient(root, regularizer)
    reg_cls = regularizers.get(regularizer)
    expected = hparams.regularization_lambda * reg_cls(reg_cls.hparams_cls()).derivative(m.double())
    ratio = grad.double() / expected
    assert float(ratio.min()) > 0
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio.mean())), rtol=1e-4, atol=0)


@pytest.mark.parametrize("regularizer,field", CASES)
def test_the_soft_mask_training_strategy_takes_the_same_penalty_flags(root, regularizer, field):
    """`open_lth train --training_strategy=soft_mask` sets the regularizer's own fields as the concave pruning
    strategies do: the flag reaches the penalty, names the experiment, and another regularizer's is refused."""
    from open_lth_concave.foundations.hparams import HparamError
    value = other_value(regularizers.get(regularizer).hparams_cls, field)
    base = ["--default_hparams=digits_lenet_300_100", "--training_strategy=soft_mask", "--quiet", "--root", str(root)]
    desc = jobs.describe("train", [*base, f"--regularizer={regularizer}", f"--{field}={value}"])
    penalty = desc.training_strategy_hparams.mask_penalty()
    assert penalty.name == regularizer and getattr(penalty.regularizer.hparams, field) == value
    assert desc.hashname != jobs.describe("train", [*base, f"--regularizer={regularizer}"]).hashname
    other = next(n for n in regularizers.list() if n != regularizer)
    with pytest.raises(HparamError, match=f"invalid --{field} with --training_strategy soft_mask"):
        jobs.describe("train", [*base, f"--regularizer={other}", f"--{field}={value}"])
