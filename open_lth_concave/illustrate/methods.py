"""The five sparsification methods of Fig. 3, batched over draws (and over lambda) with torch.

Every loss is the mean logistic loss plus (MU/2)||.||^2 on the pixel coefficients (strong convexity,
Assumption 2); the intercept is the last column of x and is never masked nor penalised.
Tensors: x (B, n, D) with D = d + 1, y (B, n), lambdas (L,).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from open_lth_concave.concave.regularizers import registry as regularizers
from open_lth_concave.illustrate.solvers import projected_gradient

DTYPE = torch.float32  # halves memory traffic; exact zeros come from the projection, not from precision
MU = 1e-3
THETA_ITERS = 600
MASK_ITERS = 600
MASK_START = 0.5  # m0 = (1/2, ..., 1/2) as in Algorithm 1
INIT_STD = 0.01  # theta starts small and random, as a network would: zeros must be reached, not inherited


def _lipschitz(x: torch.Tensor) -> torch.Tensor:
    """Per-draw Lipschitz constant of the gradient of the mean logistic loss + MU term, shape (B,)."""
    return torch.linalg.matrix_norm(x, ord=2) ** 2 / (4 * x.shape[1]) + MU


def _residual(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d(mean logistic loss)/d(logits) for logits (B, L, n).

    Logits are clipped to +-30 (changes the result by < 1e-13) so sigmoid never yields subnormal
    floats, which make CPU arithmetic tens of times slower.
    """
    return (torch.sigmoid(logits.clamp(-30.0, 30.0)) - y.unsqueeze(1)) / y.shape[-1]


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction correct per (draw, lambda); logits (B, L, n), y (B, n)."""
    return ((logits > 0).to(y.dtype) == y.unsqueeze(1)).double().mean(-1)


def _theta_descent(x: torch.Tensor, y: torch.Tensor, lambdas: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(Sub)gradient descent on theta (B, L, D); lambda * sign(theta) with sign(0) = 0, step 1/Lipschitz."""
    b, _, dim = x.shape
    theta = INIT_STD * torch.randn(b, 1, dim, generator=generator, dtype=x.dtype).expand(b, len(lambdas), dim).clone()
    step = (1.0 / _lipschitz(x)).view(b, 1, 1)
    lam = lambdas.view(1, -1, 1)
    pixel = torch.ones(dim, dtype=x.dtype)
    pixel[-1] = 0.0
    xt = x.transpose(1, 2)
    for _ in range(THETA_ITERS):
        grad = _residual(theta @ xt, y) @ x + pixel * (MU * theta + lam * torch.sign(theta))
        theta = theta - step * grad
    return theta


def logistic_regression(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Method (a): plain (MU-ridge) logistic regression by gradient descent; theta-hat (B, D)."""
    return _theta_descent(x, y, torch.zeros(1, dtype=x.dtype), generator)[:, 0]


def l1_subgradient(x: torch.Tensor, y: torch.Tensor, lambdas: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Method (b): l1 on theta by subgradient descent; theta (B, L, D)."""
    return _theta_descent(x, y, lambdas, generator)


def mask_descent(x: torch.Tensor, y: torch.Tensor, theta_hat: torch.Tensor, lambdas: torch.Tensor, penalty: str) -> torch.Tensor:
    """Methods (c)/(d): projected gradient on m in [0,1]^d over X diag(theta-hat); theta is not retrained."""
    b, _, dim = x.shape
    w, bias = theta_hat[:, :-1], theta_hat[:, -1]
    xw = x[..., :-1] * w.unsqueeze(1)  # X diag(theta-hat), (B, n, d)
    xwt = xw.transpose(1, 2)
    step = (1.0 / _lipschitz(xw)).view(b, 1, 1)

    def loss_grad(m: torch.Tensor) -> torch.Tensor:
        logits = m @ xwt + bias.view(b, 1, 1)
        return _residual(logits, y) @ xw + MU * m

    m0 = torch.full((b, len(lambdas), dim - 1), MASK_START, dtype=x.dtype)
    reg = regularizers.get(penalty)()
    return projected_gradient(loss_grad, reg, lambdas.view(1, -1, 1), m0, step, MASK_ITERS)


def masked_logits(x: torch.Tensor, theta_hat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Logits (B, L, n) of theta-hat * m on x; the intercept is kept."""
    w, bias = theta_hat[:, :-1], theta_hat[:, -1]
    return (masks * w.unsqueeze(1)) @ x[..., :-1].transpose(1, 2) + bias.view(-1, 1, 1)


def l1_penalty() -> dict:
    """LogisticRegression's arguments for a pure l1 penalty. scikit-learn 1.8 deprecated `penalty` for
    `l1_ratio` (1.0 = l1); before 1.8 `l1_ratio` is ignored unless penalty='elasticnet', so
    `l1_ratio=1.0` alone would fit an l2 model there."""
    import re

    import sklearn
    major, minor = (int(p) for p in re.match(r"(\d+)\.(\d+)", sklearn.__version__).groups())
    return {"l1_ratio": 1.0} if (major, minor) >= (1, 8) else {"penalty": "l1"}


def sklearn_l1(x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray, y_va: np.ndarray,
               lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Method (e): liblinear's l1 logistic regression (a proximal/coordinate method) as reference.

    liblinear minimises ||w||_1 + C * sum(loss), so C = 1 / (n * lambda) matches mean loss + lambda ||w||_1.
    Returns accuracy and sparsity arrays of shape (B, L).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    n = x_tr.shape[1]
    acc = np.zeros((len(x_tr), len(lambdas)))
    spa = np.zeros_like(acc)
    for i in range(len(x_tr)):
        for j, lam in enumerate(lambdas):
            clf = LogisticRegression(**l1_penalty(), solver="liblinear", C=1.0 / (n * lam), intercept_scaling=10.0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(x_tr[i, :, :-1], y_tr[i])
            acc[i, j] = clf.score(x_va[i, :, :-1], y_va[i])
            spa[i, j] = float(np.mean(clf.coef_ == 0))
    return acc, spa
