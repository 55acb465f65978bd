"""Projected gradient for problem (5) of the paper: min over m in [0,1]^d of L(m) + lam * R(m).

Shared by the illustration (batched logistic losses) and by the theorem checks (small quadratics).

Why a plain projected-gradient step is enough, even for a non-convex (concave) R:
R is concave, so R(m') <= R(m) + r'(m)^T (m' - m). Taking the step
    m+ = clamp(m - step * (grad L(m) + lam * r'(m)), 0, 1)   with step <= 1 / Lipschitz(grad L)
minimises a model that upper-bounds L + lam*R and equals it at m, hence F(m+) <= F(m): every
iterate is monotone, whatever the curvature of R. Projection onto the box sets coordinates to
exactly 0 (or 1), which is why masks become exactly sparse, unlike subgradient steps on theta.
For R = l1 (r' = 1) the problem is convex and FISTA (`accelerate=True`) reaches the global minimum;
for a strictly concave R only a stationary point is guaranteed, so acceleration is off (it would
break monotonicity).
"""
from __future__ import annotations

from typing import Callable

import torch

from open_lth_concave.concave.regularizers import Regularizer

GradFn = Callable[[torch.Tensor], torch.Tensor]


def project_box(m: torch.Tensor) -> torch.Tensor:
    return m.clamp(0.0, 1.0)


def projected_gradient(
    loss_grad: GradFn,
    regularizer: Regularizer,
    lam: float | torch.Tensor,
    m0: torch.Tensor,
    step: float | torch.Tensor,
    iters: int,
    *,
    accelerate: bool = False,
    tol: float = 0.0,
    check_every: int = 50,
) -> torch.Tensor:
    """Run `iters` projected-gradient steps from m0 (batched: any leading dims broadcast with lam/step).

    Stops early when the largest coordinate change over one step falls below `tol` (checked every
    `check_every` steps, so tol=0 means a fixed number of steps).
    """
    if accelerate and regularizer.strictly_concave:
        raise ValueError("acceleration is only safe for a convex penalty (l1); use plain steps")
    m = project_box(m0.clone())
    y, t = m, 1.0
    for it in range(iters):
        base = y if accelerate else m
        new = project_box(base - step * (loss_grad(base) + lam * regularizer.derivative(base)))
        if accelerate:
            t_next = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
            y = new + ((t - 1.0) / t_next) * (new - m)
            t = t_next
        done = tol > 0 and (it + 1) % check_every == 0 and float((new - m).abs().max()) < tol
        m = new
        if done:
            break
    return m


def stationarity_residual(loss_grad: GradFn, regularizer: Regularizer, lam: float, m: torch.Tensor) -> float:
    """Size of the projected-gradient map at m: zero exactly at the KKT points of problem (5)."""
    g = loss_grad(m) + lam * regularizer.derivative(m)
    return float((m - project_box(m - g)).abs().max())
