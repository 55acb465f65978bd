"""The soft-mask training step as the loop runs it (masked weights swapped into the model for the call,
the penalty's gradient added analytically, the fused SGD, the projection) trains to the same weights and
masks as a plain-autograd version of Eq. 2 written out here, step after step."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import open_lth_concave.concave  # noqa: F401  (registers the plug-in)
from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
from open_lth_concave.models.lenet import LeNet
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.foundations.hparams import TrainingHparams
from open_lth_concave.training import loop
from open_lth_concave.training.optimizers import optimizer_for_groups

IGNORE = "fc.weight"
STEPS = 6


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = LeNet(64, [30, 20], 10)
    mask = Mask.ones_like(model)
    name = "fc_layers.1.weight"   # entries pruned at an earlier level stay exactly 0
    mask[name] = (torch.rand(mask[name].shape, generator=torch.Generator().manual_seed(3)) > 0.3).float()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in mask:
                p.mul_(mask[n])
    g = torch.Generator().manual_seed(5)
    batches = [(torch.randn(16, 64, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(STEPS)]
    return model, mask, batches


def _reference(model: nn.Module, mask: Mask, start: torch.Tensor, s: SoftMask, batches,
               lam: float) -> tuple[dict, dict]:
    """Eq. 2 by plain autograd: loss(m * theta) + lambda * sum r(m), torch SGD (momentum, weight decay on
    both groups, the masks' lr 5), pruned mask entries get no gradient, then m projected onto [0, 1],
    pruned weights set to 0."""
    m = nn.Parameter(start.clone())
    params = dict(model.named_parameters())
    groups = [{"params": list(model.parameters())}, {"params": [m], "weight_decay": 1e-3, "lr": 5.0}]
    optimizer = torch.optim.SGD(groups, lr=0.05, momentum=0.9, weight_decay=1e-4, foreach=False)
    for x, y in batches:
        masked = {n: params[n] * v for n, v in zip(s.layout.names, s.layout.views(m))}
        loss = nn.functional.cross_entropy(torch.func.functional_call(model, masked, (x,)), y)
        optimizer.zero_grad()
        (loss + lam * s.regularizer.value(m).sum()).backward()
        m.grad.mul_(s.alive)
        optimizer.step()
        with torch.no_grad():
            m.clamp_(0, 1)
            for n, p in params.items():
                if n in mask:
                    p.mul_(mask[n])
    return {n: p.detach().clone() for n, p in params.items()}, s.layout.to_dict(m.detach())


@pytest.mark.parametrize("regularizer", ["log", "l1", "lq", "mcp"])
def test_soft_mask_steps_equal_plain_autograd_training(regularizer):
    lam = 3e-3   # large, and a large mask lr, so loss and penalty both move the masks within a few steps
    model, mask, batches = _setup()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    s = SoftMask(model, mask, SoftMaskHparams(regularizer=regularizer, regularization_lambda=lam,
                                             mask_weight_decay=1e-3, mask_lr=5.0, pruning_layers_to_ignore=IGNORE))
    start = s.variable.detach().clone()
    hp = TrainingHparams(optimizer_name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4, training_steps=f"{STEPS}it")
    optimizer = optimizer_for_groups([{"params": list(model.parameters())}] + s.param_groups(), hp, fused=True)
    for x, y in batches:   # the training loop's step
        loop.update(nn.functional.cross_entropy(s.forward(x), y), s, optimizer)
    fast_weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    fast_masks = s.relaxed_mask()

    reference = LeNet(64, [30, 20], 10)
    reference.load_state_dict(initial)
    ref_weights, ref_masks = _reference(reference, mask, start, s, batches, lam)
    for n in ref_weights:
        torch.testing.assert_close(fast_weights[n], ref_weights[n], rtol=1e-5, atol=1e-6)
    for n in ref_masks:
        torch.testing.assert_close(fast_masks[n], ref_masks[n], rtol=1e-5, atol=1e-6)
        assert bool((fast_masks[n][mask[n] == 0] == 0).all())
    # the steps did move things, and the penalty matters: without it the masks end elsewhere
    moved = sum(float((fast_masks[n] - start_n).abs().max()) for n, start_n in s.layout.to_dict(start).items())
    assert moved > 1e-3
    _, no_penalty = _reference(LeNet(64, [30, 20], 10), mask, start, s, batches, 0.0)
    assert any(not torch.allclose(fast_masks[n], no_penalty[n], rtol=1e-5, atol=1e-6) for n in ref_masks)


def test_masked_forward_leaves_the_model_unchanged_even_when_forward_raises():
    model, mask, batches = _setup()
    s = SoftMask(model, mask, SoftMaskHparams(pruning_layers_to_ignore=IGNORE))
    params = dict(model.named_parameters())
    x, _ = batches[0]
    out = s.forward(x)
    expected = nn.functional.linear(nn.functional.relu(nn.functional.linear(
        nn.functional.relu(nn.functional.linear(x, params["fc_layers.0.weight"] * 0.5, params["fc_layers.0.bias"])),
        params["fc_layers.1.weight"] * 0.5 * mask["fc_layers.1.weight"], params["fc_layers.1.bias"])),
        params["fc.weight"], params["fc.bias"])
    torch.testing.assert_close(out, expected)
    assert all(dict(model.named_parameters())[n] is p and isinstance(p, nn.Parameter) for n, p in params.items())
    with pytest.raises(RuntimeError):
        s.forward(torch.randn(4, 65))   # wrong input width: the model raises inside the masked call
    assert all(dict(model.named_parameters())[n] is p for n, p in params.items())
