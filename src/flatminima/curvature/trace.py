"""Stochastic trace estimation: Hutchinson and Hutch++ with standard errors.

Hutchinson (1990): tr(A) = E[z^T A z] for Rademacher z; the estimate is the mean of m samples, its standard
error std(samples) / sqrt(m). Hutch++ (Meyer, Musco, Musco & Woodruff 2021, Alg. 1): with m products, sketch
Q = orth(A S) from m/3 Rademacher columns, take tr(Q^T A Q) exactly (m/3 products) and Hutchinson on the
deflated operator (I - QQ^T) A (I - QQ^T) with the remaining m/3 vectors; the stderr is that of the
Hutchinson part (the low-rank part is deterministic given Q). Hutch++ wins when the spectrum is dominated by a
few large eigenvalues, as for trained networks.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ..errors import ConfigError, unknown
from ..estimate import Estimate
from ._repeat import over_subsets
from .operators import HessianOperator, LinearOperator

__all__ = ["hessian_trace", "hutchinson", "hutchpp", "rademacher"]

METHODS = ("hutch++", "hutchinson")


def rademacher(size: int, count: int, dtype: torch.dtype, device, generator: torch.Generator) -> Tensor:
    """``count`` Rademacher vectors as columns [size, count] (drawn on CPU for reproducibility)."""
    z = torch.randint(0, 2, (size, count), generator=generator, dtype=torch.int8).to(torch.float64) * 2 - 1
    return z.to(device, dtype)


def _mean_stderr(samples: list[float]) -> tuple[float, float, float]:
    m = len(samples)
    mean = sum(samples) / m
    std = math.sqrt(sum((s - mean) ** 2 for s in samples) / (m - 1)) if m > 1 else math.nan
    return mean, std, std / math.sqrt(m) if m > 1 else math.nan


def hutchinson(op: LinearOperator, matvecs: int = 100, seed: int = 0) -> Estimate:
    """tr(A) ~ (1/m) sum_j z_j^T A z_j, z_j Rademacher (Hutchinson 1990); stderr = std / sqrt(m)."""
    if matvecs < 2:
        raise ConfigError(f"hutchinson needs matvecs >= 2 (for a standard error), got {matvecs}")
    start = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(matvecs):
        z = rademacher(op.size, 1, op.dtype, op.device, g)[:, 0]
        samples.append(float(z @ op.matvec(z)))
    mean, std, se = _mean_stderr(samples)
    return Estimate(
        mean,
        matvecs=matvecs,
        seconds=time.perf_counter() - start,
        stderr=se,
        std=std,
        samples=samples,
        extra={"method": "hutchinson"},
    )


def hutchpp(op: LinearOperator, matvecs: int = 100, seed: int = 0) -> Estimate:
    """Hutch++ (Meyer et al. 2021, Alg. 1), m = ``matvecs``: m/3 sketch, m/3 exact, m/3 Hutchinson."""
    if matvecs < 6:
        raise ConfigError(f"hutch++ needs matvecs >= 6, got {matvecs}")
    start = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    s = matvecs // 3
    sketch = rademacher(op.size, s, op.dtype, op.device, g)
    q, _ = torch.linalg.qr(torch.stack([op.matvec(c) for c in sketch.T], dim=1))
    low_rank = float(sum(float(c @ op.matvec(c)) for c in q.T))
    rest = matvecs - 2 * s
    gs = rademacher(op.size, rest, op.dtype, op.device, g)
    gs = gs - q @ (q.T @ gs)
    samples = [float(c @ op.matvec(c)) for c in gs.T]
    mean, std, se = _mean_stderr(samples)
    return Estimate(
        low_rank + mean,
        matvecs=matvecs,
        seconds=time.perf_counter() - start,
        stderr=se,
        std=std,
        samples=samples,
        extra={"method": "hutch++", "low_rank_part": low_rank, "rank": s},
    )


def hessian_trace(
    obj,
    matvecs: int = 100,
    method: str = "hutch++",
    seed: int = 0,
    subsamples: int | None = None,
    subsample_size: int | None = None,
) -> Estimate:
    """tr(H) of the objective's Hessian by ``"hutch++"`` (default) or ``"hutchinson"``, with stderr."""
    if method not in METHODS:
        raise unknown("trace method", method, METHODS)
    fn = hutchpp if method == "hutch++" else hutchinson
    return over_subsets(
        obj, lambda o, s: fn(HessianOperator(o), matvecs, s), subsamples, subsample_size, seed
    )
