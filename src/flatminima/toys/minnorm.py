"""Min-norm least squares (Theory III Sec. 9.6): the implicit bias of GD / SGD, under-determined problems.

Loss L(w) = (1 / 2n) |X w - y|^2 with X of shape [n, p], n < p, full row rank. Every gradient
X^T (X w - y) / n lies in the row space of X, so the component of w in its orthogonal complement never
changes: from w0 the iterates converge to w_dagger + P_null w0, with w_dagger = X^T (X X^T)^{-1} y the
minimum-norm solution (from w0 = 0 exactly w_dagger). Early-stopped GD behaves like ridge regression: in the
eigenbasis of X X^T / n with eigenvalue s, GD after T steps keeps the factor 1 - (1 - eta s)^T of each
component and ridge w_lambda = X^T (X X^T + n lambda I)^{-1} y keeps s / (s + lambda); both are ~ eta s T and
s / lambda for small s, so the implicit ridge parameter is lambda ~ 1 / (eta T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor

from ..errors import ConfigError

__all__ = [
    "MinNormProblem",
    "gd",
    "implicit_ridge_lambda",
    "make_problem",
    "min_norm_solution",
    "ridge",
    "sgd",
]


@dataclass
class MinNormProblem:
    """X ``[n, p]`` (n < p) and y ``[n]`` in float64."""

    X: Tensor
    y: Tensor

    @property
    def max_lr(self) -> float:
        """2 / lambda_max(X^T X / n): GD is stable below this step size."""
        return 2.0 / float(torch.linalg.eigvalsh(self.X @ self.X.T / len(self.X)).max())


def make_problem(n: int = 20, p: int = 50, cond: float | None = None, seed: int = 0) -> MinNormProblem:
    """A random under-determined problem (float64): Gaussian X / sqrt(p), or, with ``cond``, X = U S V^T with
    random orthogonal U, V and the eigenvalues of X X^T / n log-spaced from 1 down to 1 / cond (a spread
    spectrum, where early stopping acts like ridge on each eigen-direction)."""
    if n >= p:
        raise ConfigError(f"need n < p for an under-determined problem, got n={n}, p={p}")
    g = torch.Generator().manual_seed(seed)
    if cond is None:
        X = torch.randn(n, p, generator=g, dtype=torch.float64) / p**0.5
    else:
        u, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        v, _ = torch.linalg.qr(torch.randn(p, n, generator=g, dtype=torch.float64))
        s = torch.logspace(0, -np.log10(cond), n, dtype=torch.float64)
        X = u @ torch.diag((n * s).sqrt()) @ v.T
    return MinNormProblem(X, torch.randn(n, generator=g, dtype=torch.float64))


def min_norm_solution(prob: MinNormProblem) -> Tensor:
    """w_dagger = X^T (X X^T)^{-1} y."""
    return prob.X.T @ torch.linalg.solve(prob.X @ prob.X.T, prob.y)


def ridge(prob: MinNormProblem, lam: float) -> Tensor:
    """w_lambda = argmin (1/2n)|X w - y|^2 + (lambda/2)|w|^2 = X^T (X X^T + n lambda I)^{-1} y."""
    n = len(prob.X)
    return prob.X.T @ torch.linalg.solve(
        prob.X @ prob.X.T + n * lam * torch.eye(n, dtype=prob.X.dtype), prob.y
    )


def gd(prob: MinNormProblem, lr: float, steps: int, w0: Tensor | None = None) -> Tensor:
    """Full-batch GD on (1/2n)|X w - y|^2 for ``steps`` steps from ``w0`` (default 0)."""
    w = torch.zeros(prob.X.shape[1], dtype=prob.X.dtype) if w0 is None else w0.clone()
    n = len(prob.X)
    for _ in range(steps):
        w -= lr * prob.X.T @ (prob.X @ w - prob.y) / n
    return w


def sgd(
    prob: MinNormProblem, lr: float, epochs: int, batch_size: int = 1, w0: Tensor | None = None, seed: int = 0
) -> Tensor:
    """Minibatch SGD (reshuffled every epoch, gradient of the minibatch mean loss) from ``w0`` (default 0)."""
    w = torch.zeros(prob.X.shape[1], dtype=prob.X.dtype) if w0 is None else w0.clone()
    g = torch.Generator().manual_seed(seed)
    n = len(prob.X)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(batch_size):
            Xb = prob.X[idx]
            w -= lr * Xb.T @ (Xb @ w - prob.y[idx]) / len(idx)
    return w


def implicit_ridge_lambda(prob: MinNormProblem, lr: float, steps: int) -> float:
    """The ridge parameter lambda whose solution is closest to the GD iterate at step ``steps`` from 0
    (minimizing |w_GD(T) - w_lambda| over log lambda); Theory III predicts lambda ~ 1 / (lr T)."""
    w_t = gd(prob, lr, steps)
    guess = np.log(1.0 / (lr * steps))

    def distance(log_lam: float) -> float:
        return float((ridge(prob, float(np.exp(log_lam))) - w_t).norm())

    res = minimize_scalar(distance, bounds=(guess - 6, guess + 6), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))
