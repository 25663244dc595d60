"""Power iteration (for comparison with Lanczos): v <- A v / ||A v||.

Converges to the eigenvalue of largest magnitude at rate |lambda_2 / lambda_1| per product. The residual
||A v - lambda v|| / |lambda| with the Rayleigh quotient lambda = v^T A v is free each step (A v is at hand).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from .lanczos import random_start
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
    op: LinearOperator, tol: float = 1e-4, max_iter: int = 100, v0: Tensor | None = None, seed: int = 0
) -> PowerResult:
    """Largest-magnitude eigenpair; stops when ||A v - lambda v|| / |lambda| < ``tol`` (Rayleigh quotient)."""
    if tol <= 0 or max_iter < 1:
        raise ConfigError(f"need tol > 0 and max_iter >= 1, got tol={tol}, max_iter={max_iter}")
    v = random_start(op.size, op.dtype, op.device, seed) if v0 is None else v0.to(op.device, op.dtype)
    v = v / v.norm()
    lam, res, matvecs = 0.0, float("inf"), 0
    for _ in range(max_iter):
        w = op.matvec(v)
        matvecs += 1
        lam = float(v @ w)
        res = float((w - lam * v).norm()) / max(abs(lam), 1e-300)
        if res < tol:
            break
        norm = w.norm()
        if not torch.isfinite(norm) or float(norm) == 0.0:
            break
        v = w / norm
    return PowerResult(lam, v, res, matvecs, res < tol)
