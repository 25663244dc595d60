"""Sharpness a = lambda_max(H) (Wu, Ma & E 2018, Def. 3) and the top of the Hessian spectrum, by Lanczos."""

from __future__ import annotations

import math
import time
from typing import Any

from torch import Tensor

from ..errors import ConfigError
from ..estimate import Estimate
from ._feedback import (
    Progress,
    check_finite,
    check_k,
    check_positive_int,
    check_subsamples,
    check_tol,
    check_v0,
    warn_not_converged,
)
from ._repeat import over_subsets
from .lanczos import WHICH, lanczos
from .operators import HessianOperator

__all__ = ["EigenvalueResult", "hessian_eigenvalues", "sharpness"]


class EigenvalueResult(list):
    """Eigenvalues with their diagnostics: a ``list[float]`` (iterable, indexable, ``len``, and equal to the
    plain list of its values, so code written for the old ``list[float]`` return keeps working) with

    ``values`` (the list itself), ``residuals`` (relative ||H y - theta y|| / |theta| per eigenvalue, the
    Lanczos bound), ``matvecs``, ``converged`` (every residual < ``tol``), ``which``, ``tol``, ``seconds``
    and ``vectors`` (unit eigenvectors as columns [p, k] with ``return_vectors=True``, else None).
    """

    def __init__(
        self,
        values: Any,
        residuals: Any,
        matvecs: int,
        converged: bool,
        which: str,
        tol: float,
        vectors: Tensor | None = None,
        seconds: float = 0.0,
    ) -> None:
        super().__init__(float(v) for v in values)
        self.residuals = [float(r) for r in residuals]
        self.matvecs = int(matvecs)
        self.converged = bool(converged)
        self.which = which
        self.tol = float(tol)
        self.vectors = vectors
        self.seconds = float(seconds)

    @property
    def values(self) -> list[float]:
        return list(self)

    def to_dict(self) -> dict[str, Any]:
        """Numbers only (no vectors), for JSON."""
        return {
            "values": self.values,
            "residuals": self.residuals,
            "matvecs": self.matvecs,
            "converged": self.converged,
            "which": self.which,
            "tol": self.tol,
            "seconds": self.seconds,
        }

    def __repr__(self) -> str:
        worst = max(self.residuals) if self.residuals else math.nan
        vec = "" if self.vectors is None else f", vectors={tuple(self.vectors.shape)}"
        return (
            f"EigenvalueResult({list.__repr__(self)}, worst residual {worst:.1e}, matvecs={self.matvecs}, "
            f"converged={self.converged}, which={self.which!r}{vec})"
        )


def _top(obj, tol: float, max_iter: int, v0: Tensor | None, seed: int, progress: Progress) -> Estimate:
    start = time.perf_counter()
    r = lanczos(
        HessianOperator(obj), k=1, which="LA", tol=tol, max_iter=max_iter, v0=v0, seed=seed, progress=progress
    )
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
    progress: Progress = None,
) -> Estimate:
    """Largest (algebraic) Hessian eigenvalue a = lambda_max(H) of the training loss, by Lanczos.

    Stops when the Lanczos bound on ||H v - a v|| / |a| falls below ``tol`` (no extra product);
    ``residual`` reports it, and a run that hits ``max_iter`` first warns (:class:`~flatminima.errors.
    ConvergenceWarning`) and returns ``converged=False``. ``extra["eigenvector"]`` holds the unit top
    eigenvector: pass it as ``v0`` to warm-start the next measurement at a nearby point. With
    ``subsamples=k, subsample_size=m``: mean ± std over k random m-subsets (then no eigenvector; the warm
    start is used for each subset). Norms and inner products are accumulated in float64, so a float32 model's
    value matches a float64 reference to ~``tol``. ``progress``: True (bar) or ``(done, total)`` callable.
    """
    check_tol(tol)
    check_positive_int(max_iter, "max_iter")
    check_v0(v0, obj.num_params)
    check_subsamples(obj, subsamples, subsample_size)
    check_finite(obj)
    est = over_subsets(
        obj, lambda o, s: _top(o, tol, max_iter, v0, s, progress), subsamples, subsample_size, seed
    )
    if not est.converged:
        warn_not_converged("sharpness", est.matvecs, est.residual, tol)
    return est


def hessian_eigenvalues(
    obj,
    k: int = 10,
    which: str = "LA",
    tol: float = 1e-4,
    max_iter: int | None = None,
    seed: int = 0,
    return_vectors: bool = False,
    progress: Progress = None,
) -> EigenvalueResult:
    """k extreme Hessian eigenvalues: ``"LA"`` largest first, ``"LM"`` largest magnitude first, ``"SA"`` most
    negative first. Lanczos with full reorthogonalization; ``max_iter`` defaults to max(100, 4k) products.

    Returns an :class:`EigenvalueResult` (a list of the k values that also carries residuals, matvecs,
    converged and, with ``return_vectors=True``, the eigenvectors). Warns (ConvergenceWarning) when not
    converged to ``tol``.
    """
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    check_k(k, obj.num_params)
    check_tol(tol)
    steps = max(100, 4 * k) if max_iter is None else check_positive_int(max_iter, "max_iter")
    check_finite(obj)
    start = time.perf_counter()
    r = lanczos(HessianOperator(obj), k=k, which=which, tol=tol, max_iter=steps, seed=seed, progress=progress)
    result = EigenvalueResult(
        r.eigenvalues.tolist(),
        r.residuals.tolist(),
        r.matvecs,
        r.converged,
        which,
        tol,
        vectors=r.eigenvectors.detach() if return_vectors else None,
        seconds=time.perf_counter() - start,
    )
    if not r.converged:
        warn_not_converged("hessian_eigenvalues", r.matvecs, float(r.residuals.max()), tol)
    return result
