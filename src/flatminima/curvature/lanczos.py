"""Lanczos with full reorthogonalization for extreme eigenpairs of implicit symmetric operators.

Krylov recurrence A q_j = beta_{j-1} q_{j-1} + alpha_j q_j + beta_j q_{j+1} with every new vector
re-orthogonalized against all previous ones (classical Gram-Schmidt, repeated when needed), so the tridiagonal
T_m stays faithful in floating point. Ritz pairs (theta_i, y_i = Q_m s_i) satisfy
||A y_i - theta_i y_i|| = |beta_m s_{m,i}| (Golub & Van Loan, Matrix Computations, Sec. 10.1.4), so
convergence is checked from T_m alone: the stopping rule ``|beta_m s_{m,i}| / |theta_i| < tol`` costs no extra
matvec, and the cost is ~ matvecs x one product.

``which``: ``"LA"`` largest algebraic, ``"LM"`` largest magnitude, ``"SA"`` smallest algebraic (the Krylov
space of -A is that of A, so this is Lanczos on -A without the extra sign flips).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from .operators import LinearOperator

__all__ = ["LanczosResult", "lanczos", "lanczos_tridiagonal", "random_start"]

WHICH = ("LA", "LM", "SA")


@dataclass
class LanczosResult:
    """k Ritz pairs, ordered as ``which`` asks (largest first for LA/LM, smallest first for SA)."""

    eigenvalues: Tensor  # [k]
    eigenvectors: Tensor  # [p, k], unit norm
    residuals: Tensor  # [k], relative ||A y - theta y|| / |theta| from the Lanczos bound
    matvecs: int
    converged: bool
    iterations: int


def random_start(size: int, dtype: torch.dtype, device: torch.device, seed: int) -> Tensor:
    """A reproducible Gaussian unit vector (drawn on CPU: the same seed gives the same vector anywhere)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(size, generator=g, dtype=torch.float64)
    return (v / v.norm()).to(device, dtype)


class _Basis:
    """Growing row buffer Q [m, p] (doubling), so reorthogonalization is two matrix-vector products."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device, capacity: int) -> None:
        self._buf = torch.empty(max(1, min(capacity, 8)), size, dtype=dtype, device=device)
        self.m = 0
        self._limit = capacity

    @property
    def rows(self) -> Tensor:
        return self._buf[: self.m]

    def append(self, q: Tensor) -> None:
        if self.m == self._buf.shape[0]:
            grow = min(self._limit, 2 * self._buf.shape[0])
            new = torch.empty(grow, self._buf.shape[1], dtype=self._buf.dtype, device=self._buf.device)
            new[: self.m] = self._buf[: self.m]
            self._buf = new
        self._buf[self.m] = q
        self.m += 1

    def orthogonalize(self, w: Tensor) -> Tensor:
        """Classical Gram-Schmidt, repeated once when it cancelled much of w ("twice is enough": Kahan-Parlett
        criterion ||w'|| < ||w|| / sqrt(2))."""
        q = self.rows
        norm = w.norm()
        w = torch.addmv(w, q.T, q @ w, alpha=-1)
        if w.norm() < 0.7071 * norm:
            w = torch.addmv(w, q.T, q @ w, alpha=-1)
        return w


def _tridiagonal(alpha: list[float], beta: list[float]) -> Tensor:
    t = torch.diag(torch.tensor(alpha, dtype=torch.float64))
    if len(alpha) > 1:
        off = torch.tensor(beta[: len(alpha) - 1], dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
    return t


def _select(theta: Tensor, k: int, which: str) -> Tensor:
    if which == "LA":
        return torch.argsort(theta, descending=True)[:k]
    if which == "SA":
        return torch.argsort(theta)[:k]
    return torch.argsort(theta.abs(), descending=True)[:k]


def _run(op: LinearOperator, v0: Tensor, max_iter: int, stop) -> tuple[_Basis, list[float], list[float], int]:
    """The Lanczos recurrence; ``stop(alpha, beta)`` is asked after every step whether to finish."""
    p = op.size
    steps = min(max_iter, p)
    basis = _Basis(p, op.dtype, op.device, steps)
    q = v0 / v0.norm()
    alpha: list[float] = []
    beta: list[float] = []
    matvecs = 0
    scale = 0.0
    for _ in range(steps):
        basis.append(q)
        w = op.matvec(q)
        matvecs += 1
        a = float(q @ w)
        alpha.append(a)
        w = basis.orthogonalize(w)
        b = float(w.norm())
        beta.append(b)
        scale = max(scale, abs(a), b)
        if stop(alpha, beta) or b <= 1e-12 * max(scale, 1e-300) or len(alpha) == steps:
            break
        q = w / b
    return basis, alpha, beta, matvecs


def lanczos(
    op: LinearOperator,
    k: int = 1,
    which: str = "LA",
    tol: float = 1e-4,
    max_iter: int = 100,
    v0: Tensor | None = None,
    seed: int = 0,
    scale: float = 0.0,
) -> LanczosResult:
    """Top-k eigenpairs of the symmetric operator ``op`` by Lanczos with full reorthogonalization.

    Stops when every wanted Ritz pair has relative residual bound |beta_m s_{m,i}| / |theta_i| < ``tol`` or
    after ``max_iter`` products (``converged=False`` then). ``v0`` warm-starts (e.g. a previous top
    eigenvector); otherwise a Gaussian vector from ``seed``. Memory: one [m, p] basis. ``scale`` (default 0)
    floors the denominator, |beta_m s_{m,i}| / max(|theta_i|, scale): pass the spectral norm when the wanted
    eigenvalue may be ~0 (e.g. the most negative eigenvalue of a near-PSD Hessian), so "relative" means
    relative to ||A||.
    """
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if k < 1 or k > op.size:
        raise ConfigError(f"k must be in [1, {op.size}], got {k}")
    if max_iter < k:
        raise ConfigError(f"max_iter ({max_iter}) must be at least k ({k})")
    if tol <= 0:
        raise ConfigError(f"tol must be positive, got {tol}")
    start = random_start(op.size, op.dtype, op.device, seed) if v0 is None else v0.to(op.device, op.dtype)
    if float(start.norm()) == 0 or not torch.isfinite(start).all():
        start = random_start(op.size, op.dtype, op.device, seed)

    def ritz(alpha: list[float], beta: list[float]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        theta, s = torch.linalg.eigh(_tridiagonal(alpha, beta))
        idx = _select(theta, k, which)
        bound = (beta[-1] * s[-1, idx]).abs() / theta[idx].abs().clamp_min(max(scale, 1e-300))
        return theta[idx], s[:, idx], bound, idx

    def stop(alpha: list[float], beta: list[float]) -> bool:
        if len(alpha) < k:
            return False
        return bool((ritz(alpha, beta)[2] < tol).all())

    basis, alpha, beta, matvecs = _run(op, start, max_iter, stop)
    theta, s, bound, _ = ritz(alpha, beta)
    if not all(math.isfinite(a) for a in alpha):
        raise FloatingPointError("Lanczos met a non-finite product (NaN/inf in the operator)")
    if len(alpha) < k:  # invariant subspace smaller than k: fewer pairs exist in this Krylov space
        k = len(alpha)
    vectors = basis.rows.T @ s.to(op.dtype)
    vectors = vectors / vectors.norm(dim=0, keepdim=True)
    invariant = beta[-1] <= 1e-12 * max(max(abs(a) for a in alpha), max(beta), 1e-300)
    converged = bool((bound < tol).all()) or invariant
    return LanczosResult(theta, vectors, bound, matvecs, converged, len(alpha))


def lanczos_tridiagonal(op: LinearOperator, v0: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Nodes and weights of the Gauss quadrature of the spectral measure of ``op`` seen from ``v0``.

    ``steps`` Lanczos steps (full reorthogonalization) from the unit vector v0/||v0||; eigen-decomposition
    T = S diag(theta) S^T gives nodes theta_j and weights tau_j = S_{1j}^2, so that
    v0^T f(A) v0 / ||v0||^2 ~ sum_j tau_j f(theta_j) (Golub & Meurant; Ubaru, Chen & Saad 2017, SLQ).
    """
    _, alpha, beta, _ = _run(op, v0, steps, lambda a, b: False)
    theta, s = torch.linalg.eigh(_tridiagonal(alpha, beta))
    return theta, s[0] ** 2
