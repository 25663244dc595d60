"""Sharpness a = lambda_max(H) (Wu, Ma & E 2018, Def. 3) and the top of the Hessian spectrum, by Lanczos."""

from __future__ import annotations

import time
import warnings

from torch import Tensor

from ..estimate import Estimate
from ._repeat import over_subsets
from .lanczos import lanczos
from .operators import HessianOperator

__all__ = ["hessian_eigenvalues", "sharpness"]


def _top(obj, tol: float, max_iter: int, v0: Tensor | None, seed: int) -> Estimate:
    start = time.perf_counter()
    r = lanczos(HessianOperator(obj), k=1, which="LA", tol=tol, max_iter=max_iter, v0=v0, seed=seed)
    return Estimate(
        value=float(r.eigenvalues[0]),
        residual=float(r.residuals[0]),
        matvecs=r.matvecs,
        converged=r.converged,
        seconds=time.perf_counter() - start,
        extra={"eigenvector": r.eigenvectors[:, 0].detach(), "iterations": r.iterations},
    )


def sharpness(
    obj,
    tol: float = 1e-4,
    max_iter: int = 100,
    v0: Tensor | None = None,
    seed: int = 0,
    subsamples: int | None = None,
    subsample_size: int | None = None,
) -> Estimate:
    """Largest (algebraic) Hessian eigenvalue a = lambda_max(H) of the training loss, by Lanczos.

    Stops when the Lanczos bound on ||H v - a v|| / |a| falls below ``tol`` (no extra product);
    ``residual`` reports it. ``extra["eigenvector"]`` holds the unit top eigenvector: pass it as ``v0`` to
    warm-start the next measurement at a nearby point. With ``subsamples=k, subsample_size=m``: mean ± std
    over k random m-subsets (then no eigenvector; the warm start is used for each subset).
    """
    return over_subsets(obj, lambda o, s: _top(o, tol, max_iter, v0, s), subsamples, subsample_size, seed)


def hessian_eigenvalues(
    obj, k: int = 10, which: str = "LA", tol: float = 1e-4, max_iter: int | None = None, seed: int = 0
) -> list[float]:
    """k extreme Hessian eigenvalues: ``"LA"`` largest first, ``"LM"`` largest magnitude first, ``"SA"`` most
    negative first. Lanczos with full reorthogonalization; ``max_iter`` defaults to max(100, 4k) products.
    Warns (RuntimeWarning) when not converged to ``tol``."""
    r = lanczos(
        HessianOperator(obj), k=k, which=which, tol=tol, max_iter=max_iter or max(100, 4 * k), seed=seed
    )
    if not r.converged:
        warnings.warn(
            f"hessian_eigenvalues: not converged after {r.matvecs} products (worst residual "
            f"{float(r.residuals.max()):.1e} > tol {tol:g})",
            RuntimeWarning,
            stacklevel=2,
        )
    return [float(t) for t in r.eigenvalues]
