"""Every registered regularizer: autograd gradient == `derivative`, and Assumption 1 holds numerically.

Parametrized over the registry, so a newly registered penalty is tested without editing this file.
"""
import pytest
import torch

import open_lth_concave.concave  # noqa: F401  (registers everything)
from open_lth_concave.concave.regularizers import registry

NAMES = registry.list()
GRID = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)


def test_the_paper_penalties_and_more_are_registered():
    assert {"l1", "log", "lq", "mcp"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_autograd_gradient_equals_derivative(name):
    reg = registry.get(name)()
    m = torch.linspace(0.01, 0.99, 97, dtype=torch.float64, requires_grad=True)
    reg.value(m).sum().backward()
    torch.testing.assert_close(m.grad, reg.derivative(m.detach()), rtol=1e-9, atol=1e-9)
    # the training step's in-place form: grad += scale * r'(m), leaving m untouched
    grad, before = torch.full_like(m.detach(), 0.25), m.detach().clone()
    reg.add_derivative_(grad, m.detach(), 3e-3)
    torch.testing.assert_close(grad, 0.25 + 3e-3 * m.grad, rtol=1e-9, atol=1e-12)
    assert torch.equal(m.detach(), before)


@pytest.mark.parametrize("name", NAMES)
def test_assumption_1(name):
    reg = registry.get(name)()
    r = reg.value(GRID)
    assert abs(float(r[0])) < 1e-12 and abs(float(r[-1]) - 1) < 1e-12      # r(0)=0, r(1)=1
    assert bool((r[1:] - r[:-1] >= -1e-12).all())                             # non-decreasing
    second = r[2:] - 2 * r[1:-1] + r[:-2]
    assert bool((second <= 1e-12).all())                                      # concave
    assert float(r.min()) >= 0 and float(r.max()) <= 1 + 1e-12                # image [0,1]


def test_log_penalty_is_the_papers_formula():
    reg = registry.get("log")()
    m = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    expected = torch.log((m + 0.1) / 0.1) / torch.log(torch.tensor(1.1 / 0.1, dtype=torch.float64))
    torch.testing.assert_close(reg.value(m), expected)
