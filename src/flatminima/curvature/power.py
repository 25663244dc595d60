"""Power iteration (for comparison with Lanczos): v <- A v / ||A v||.

Converges to the eigenvalue of largest magnitude at rate |lambda_2 / lambda_1| per product. The residual
||A v - lambda v|| / |lambda| with the Rayleigh quotient lambda = v^T A v is free each step (A v is at hand).
The Rayleigh quotient, the residual and the normalisation are accumulated in float64 (``_accurate.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._accurate import dot, norm
from ._feedback import Progress, check_positive_int, check_tol, check_v0, ticker
from .lanczos import _unit, random_start
from .operators import LinearOperator

__all__ = ["PowerResult", "power_iteration"]


@dataclass
class PowerResult:
    eigenvalue: float
    eigenvector: Tensor
    residual: float
    matvecs: int
    converged: bool


def power_iteration(
    op: LinearOperator,
    tol: float = 1e-4,
    max_iter: int = 100,
    v0: Tensor | None = None,
    seed: int = 0,
    progress: Progress = None,
) -> PowerResult:
    """Largest-magnitude eigenpair; stops when ||A v - lambda v|| / |lambda| < ``tol`` (Rayleigh quotient)."""
    check_tol(tol)
    check_positive_int(max_iter, "max_iter")
    check_v0(v0, op.size)
    v = random_start(op.size, op.dtype, op.device, seed) if v0 is None else v0.to(op.device, op.dtype)
    v = _unit(v, norm(v))
    lam, res, matvecs = 0.0, float("inf"), 0
    with ticker(progress, max_iter, "power iteration") as tick:
        for _ in range(max_iter):
            w = op.matvec(v)
            matvecs += 1
            tick(1)
            lam = dot(v, w)
            res = norm(w.to(torch.float64) - lam * v.to(torch.float64)) / max(abs(lam), 1e-300)
            if res < tol:
                break
            length = norm(w)
            if not (length > 0 and length < float("inf")):
                break
            v = _unit(w, length)
    return PowerResult(lam, v, res, matvecs, res < tol)
