"""Lanczos with full reorthogonalization for extreme eigenpairs of implicit symmetric operators.

Krylov recurrence A q_j = beta_{j-1} q_{j-1} + alpha_j q_j + beta_j q_{j+1} with every new vector
re-orthogonalized against all previous ones (classical Gram-Schmidt, repeated when needed), so the tridiagonal
T_m stays faithful in floating point. Ritz pairs (theta_i, y_i = Q_m s_i) satisfy
||A y_i - theta_i y_i|| = |beta_m s_{m,i}| (Golub & Van Loan, Matrix Computations, Sec. 10.1.4), so
convergence is checked from T_m alone: the stopping rule ``|beta_m s_{m,i}| / |theta_i| < tol`` costs no extra
matvec, and the cost is ~ matvecs x one product.

Precision: alpha_j = q_j^T A q_j, beta_j = ||w_j|| and the normalisation q_{j+1} = w_j / beta_j are computed
in float64 (``_accurate.py``) whatever the operator's dtype; float32 reductions over ~10^6 entries are off by
1e-5..1e-4 and biased the reported eigenvalues of float32 models by as much (issue 15). The basis itself is
stored in the operator's dtype (memory), its Gram-Schmidt coefficients come from one matrix-vector product
each, and a second pass runs whenever the first cancelled much of the vector.

Several independent recurrences can run in lockstep (:func:`lanczos_quadrature`, used by SLQ): each step is
one *block* product A [q_1 ... q_R], which costs far less than R separate products for network operators.

``which``: ``"LA"`` largest algebraic, ``"LM"`` largest magnitude, ``"SA"`` smallest algebraic (the Krylov
space of -A is that of A, so this is Lanczos on -A without the extra sign flips).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import ConfigError
from ._accurate import coefficients, col_norms, dot, norm
from ._feedback import Progress, check_k, check_positive_int, check_tol, check_v0, ticker
from .operators import LinearOperator

__all__ = [
    "LanczosResult",
    "Quadrature",
    "lanczos",
    "lanczos_quadrature",
    "lanczos_tridiagonal",
    "random_start",
]

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


def _unit(w: Tensor, length: float) -> Tensor:
    """w / length with the division in float64, rounded once to w's dtype (norm exact to rounding)."""
    if w.dtype == torch.float64:
        return w / length
    return (w.to(torch.float64) / length).to(w.dtype)


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
        criterion ||w'|| < ||w|| / sqrt(2)); norms and coefficients accumulated in float64."""
        q = self.rows
        before = norm(w)
        w = torch.addmv(w, q.T, coefficients(q, w), alpha=-1)
        if norm(w) < 0.7071 * before:
            w = torch.addmv(w, q.T, coefficients(q, w), alpha=-1)
        return w


@dataclass
class _Run:
    """One Lanczos recurrence: its basis and the entries of T."""

    basis: _Basis
    alpha: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    scale: float = 0.0


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


def _recurrences(
    op: LinearOperator,
    starts: Tensor,
    max_iter: int,
    stop: Callable[[list[float], list[float]], bool] | None = None,
    tick: Callable[[int], None] = lambda n: None,
) -> list[_Run]:
    """R Lanczos recurrences from the columns of ``starts`` [p, R] in lockstep (one block product per
    step); a run ends after ``max_iter`` steps, on breakdown (invariant subspace) or when ``stop(alpha,
    beta)`` says so (asked after every step)."""
    p, count = starts.shape
    steps = min(max_iter, p)
    runs = [_Run(_Basis(p, op.dtype, op.device, steps)) for _ in range(count)]
    lengths = col_norms(starts)
    q_block = torch.stack([_unit(starts[:, j], float(lengths[j])) for j in range(count)], dim=1)
    active = list(range(count))
    for _ in range(steps):
        w_block = op.matmat(q_block)
        tick(len(active))
        cols, still = [], []
        for j, r in enumerate(active):
            run, q = runs[r], q_block[:, j]
            run.basis.append(q)
            w = w_block[:, j]
            a = dot(q, w)
            run.alpha.append(a)
            w = run.basis.orthogonalize(w)
            b = norm(w)
            run.beta.append(b)
            run.scale = max(run.scale, abs(a), b)
            finished = (
                (stop is not None and stop(run.alpha, run.beta))
                or not math.isfinite(a)
                or b <= 1e-12 * max(run.scale, 1e-300)
                or len(run.alpha) == steps
            )
            if not finished:
                cols.append(_unit(w, b))
                still.append(r)
        if not still:
            break
        q_block, active = torch.stack(cols, dim=1), still
    return runs


def lanczos(
    op: LinearOperator,
    k: int = 1,
    which: str = "LA",
    tol: float = 1e-4,
    max_iter: int = 100,
    v0: Tensor | None = None,
    seed: int = 0,
    scale: float = 0.0,
    progress: Progress = None,
) -> LanczosResult:
    """Top-k eigenpairs of the symmetric operator ``op`` by Lanczos with full reorthogonalization.

    Stops when every wanted Ritz pair has relative residual bound |beta_m s_{m,i}| / |theta_i| < ``tol`` or
    after ``max_iter`` products (``converged=False`` then). ``v0`` warm-starts (e.g. a previous top
    eigenvector); otherwise a Gaussian vector from ``seed``. Memory: one [m, p] basis. ``scale`` (default 0)
    floors the denominator, |beta_m s_{m,i}| / max(|theta_i|, scale): pass the spectral norm when the wanted
    eigenvalue may be ~0 (e.g. the most negative eigenvalue of a near-PSD Hessian), so "relative" means
    relative to ||A||. ``progress``: True (bar) or a callable ``(done, total)`` called after every product
    (total = ``max_iter``, an upper bound).
    """
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    k = check_k(k, op.size)
    check_positive_int(max_iter, "max_iter")
    if max_iter < k:
        raise ConfigError(f"max_iter ({max_iter}) must be at least k ({k})")
    check_tol(tol)
    check_v0(v0, op.size)
    start = random_start(op.size, op.dtype, op.device, seed) if v0 is None else v0.to(op.device, op.dtype)
    if norm(start) == 0 or not torch.isfinite(start).all():
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

    with ticker(progress, min(max_iter, op.size), "lanczos") as tick:
        (run,) = _recurrences(op, start.unsqueeze(1), max_iter, stop, tick)
    alpha, beta = run.alpha, run.beta
    if not all(math.isfinite(a) for a in alpha):
        raise FloatingPointError("Lanczos met a non-finite product (NaN/inf in the operator)")
    theta, s, bound, _ = ritz(alpha, beta)
    vectors = run.basis.rows.T @ s.to(op.dtype)
    vectors = torch.stack([_unit(c, float(n)) for c, n in zip(vectors.T, col_norms(vectors), strict=True)], 1)
    invariant = beta[-1] <= 1e-12 * max(max(abs(a) for a in alpha), max(beta), 1e-300)
    converged = bool((bound < tol).all()) or invariant
    return LanczosResult(theta, vectors, bound, len(alpha), converged, len(alpha))


@dataclass
class Quadrature:
    """Gauss quadrature of one SLQ run: ``nodes`` theta_j, ``weights`` tau_j (sum 1), the same from one step
    fewer (``previous_nodes``, ``previous_weights``: their difference measures the quadrature error), and
    ``edge_residual`` = max over the two extreme Ritz pairs of |beta_m s_{m,i}| / max_j |theta_j| (how well
    the ends of the spectrum are resolved)."""

    nodes: Tensor
    weights: Tensor
    previous_nodes: Tensor
    previous_weights: Tensor
    edge_residual: float


def _quadrature(alpha: list[float], beta: list[float]) -> tuple[Tensor, Tensor, Tensor]:
    theta, s = torch.linalg.eigh(_tridiagonal(alpha, beta))
    return theta, s[0] ** 2, s


def lanczos_quadrature(
    op: LinearOperator, starts: Tensor, steps: int, tick: Callable[[int], None] = lambda n: None
) -> list[Quadrature]:
    """Gauss quadrature of the spectral measure of ``op`` seen from each column of ``starts`` [p, R], the R
    recurrences run in lockstep with block products.

    ``steps`` Lanczos steps (full reorthogonalization) from the unit vector v/||v||; the eigen-decomposition
    T = S diag(theta) S^T gives nodes theta_j and weights tau_j = S_{1j}^2, so that
    v^T f(A) v / ||v||^2 ~ sum_j tau_j f(theta_j) (Golub & Meurant; Ubaru, Chen & Saad 2017, SLQ).
    """
    out = []
    for run in _recurrences(op, starts, steps, None, tick):
        if not all(math.isfinite(a) for a in run.alpha):
            raise FloatingPointError("Lanczos met a non-finite product (NaN/inf in the operator)")
        theta, tau, s = _quadrature(run.alpha, run.beta)
        if len(run.alpha) > 1:
            prev_theta, prev_tau, _ = _quadrature(run.alpha[:-1], run.beta[:-1])
        else:
            prev_theta, prev_tau = theta, tau
        top = float(theta.abs().max().clamp_min(1e-300))
        edge = max(abs(run.beta[-1] * float(s[-1, i])) for i in (0, len(theta) - 1)) / top
        out.append(Quadrature(theta, tau, prev_theta, prev_tau, edge))
    return out


def lanczos_tridiagonal(op: LinearOperator, v0: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """:func:`lanczos_quadrature` for one start vector ``v0``: (nodes, weights)."""
    q = lanczos_quadrature(op, v0.reshape(-1, 1), steps)[0]
    return q.nodes, q.weights
