"""Non-uniformity s = sqrt(lambda_max(Sigma)), Sigma = (1/n) sum_i H_i^2 - H^2 (Wu, Ma & E 2018, Def. 3)."""

from __future__ import annotations

import math
import time

from torch import Tensor

from ..errors import unknown
from ..estimate import Estimate
from ._feedback import (
    Progress,
    check_finite,
    check_positive_int,
    check_subsamples,
    check_tol,
    check_v0,
    warn_not_converged,
)
from ._repeat import over_subsets
from .lanczos import lanczos
from .sigma import SigmaOperator, moments

__all__ = ["AUTO_GGN_LOSS_RATIO", "choose_method", "engine_for", "loss_ratio", "non_uniformity"]

METHODS = ("auto", "exact", "ggn")

#: ``method="auto"`` uses the Gauss-Newton form when I(theta) / I(outputs = 0) is below this ratio.
AUTO_GGN_LOSS_RATIO = 1e-3


def loss_ratio(obj) -> float:
    """Training loss relative to the loss of the zero predictor, I(theta) / (1/n) sum_i l(0, y_i)."""
    base = obj.zero_predictor_value()
    value = obj.value()
    return value / base if base > 0 else (0.0 if value == 0 else math.inf)


def choose_method(obj, method: str) -> tuple[str, str]:
    """Resolve ``method``: "auto" -> "ggn" when the loss is ``mse``/``cross_entropy`` and
    I(theta) / I(outputs = 0) < AUTO_GGN_LOSS_RATIO (= 1e-3; near interpolation H_i ~ J_i^T Q_i J_i),
    else "exact". Returns (method, reason)."""
    if method not in METHODS:
        raise unknown("non-uniformity method", method, METHODS)
    if method != "auto":
        return method, "requested"
    if obj.loss_name not in ("mse", "cross_entropy"):
        return "exact", f"loss {obj.loss_name!r} is not mse/cross_entropy"
    ratio = loss_ratio(obj)
    if ratio < AUTO_GGN_LOSS_RATIO:
        return "ggn", f"loss ratio {ratio:.2e} < {AUTO_GGN_LOSS_RATIO:g}"
    return "exact", f"loss ratio {ratio:.2e} >= {AUTO_GGN_LOSS_RATIO:g}"


def _ggn_gap(obj, engine, v: Tensor) -> float:
    """||(H - G) v|| / ||H v||: the size of the residual term the Gauss-Newton form drops."""
    hv = obj.hvp(v)
    gv = engine.hvp(v)
    return float((hv - gv).norm() / hv.norm().clamp_min(1e-300))


def engine_for(obj, method: str, chunk_size: int | None = None, memory_budget: int | None = None):
    """(engine, resolved method, reason): :func:`choose_method`, then the engine, with the reason extended
    when the Gauss-Newton blocks did not fit in ``memory_budget`` and the exact engine was used."""
    resolved, reason = choose_method(obj, method)
    engine = moments(obj, resolved, chunk_size, memory_budget)
    if getattr(engine, "fallback", None):
        reason = f"{reason}; ggn -> exact: {engine.fallback}"
        resolved = engine.method
    return engine, resolved, reason


def _measure(
    obj,
    method: str,
    tol: float,
    max_iter: int,
    v0: Tensor | None,
    seed: int,
    chunk_size: int | None,
    memory_budget: int | None,
    progress: Progress,
) -> Estimate:
    start = time.perf_counter()
    engine, resolved, reason = engine_for(obj, method, chunk_size, memory_budget)
    setup = time.perf_counter() - start
    r = lanczos(
        SigmaOperator(obj, engine=engine),
        k=1,
        which="LA",
        tol=tol,
        max_iter=max_iter,
        v0=v0,
        seed=seed,
        progress=progress,
    )
    lam = float(r.eigenvalues[0])
    v = r.eigenvectors[:, 0].detach()
    extra = {
        "method": resolved,
        "method_reason": reason,
        "sigma_max": lam,
        "eigenvector": v,
        "iterations": r.iterations,
        "setup_seconds": setup,
        "loss_ratio": loss_ratio(obj),
    }
    seconds = time.perf_counter() - start
    if resolved == "ggn":
        extra["ggn_residual"] = _ggn_gap(obj, engine, v)
    if getattr(engine, "memory", None):
        extra["memory"] = dict(engine.memory)
    return Estimate(
        value=math.sqrt(max(lam, 0.0)),
        residual=float(r.residuals[0]),
        matvecs=r.matvecs,
        converged=r.converged,
        seconds=seconds,
        extra=extra,
    )


def non_uniformity(
    obj,
    method: str = "auto",
    tol: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
    v0: Tensor | None = None,
    subsamples: int | None = None,
    subsample_size: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    progress: Progress = None,
) -> Estimate:
    """Non-uniformity s = sqrt(lambda_max(Sigma)) (Wu, Ma & E 2018, Def. 3) by Lanczos on Sigma.

    ``method``: ``"exact"`` (for Linear/Conv2d nets S v as a second derivative of per-example gradient inner
    products, else per-example HVPs with vmap + chunks of ``chunk_size``; a Sigma product costs S v + two
    HVPs, measured 2.6x one HVP on an MLP and ~7x on a small CNN), ``"ggn"`` (H_i = J_i^T Q_i J_i with
    K x K Jacobian Gram blocks; exact at an interpolating MSE minimum, ``extra["ggn_residual"]`` =
    ||(H - G) v|| / ||H v|| at the top vector says how far from it), ``"auto"`` (ggn when I / I(outputs=0)
    < 1e-3 for mse/cross_entropy, else exact; ``extra["method"]`` says which, ``extra["method_reason"]``
    why). ``residual`` is the relative eigen-residual of lambda_max(Sigma) (``extra["sigma_max"]``); the
    relative error of s is about half of that of lambda_max(Sigma); not converged -> ConvergenceWarning.

    Memory: the Gauss-Newton blocks need 3 K^2 numbers per example (K = outputs per example, T x V for a
    sequence model); they are estimated before being built and computed in groups of examples that fit in
    ``memory_budget`` bytes (default ``GGN_MEMORY`` = 2 GiB); when the blocks alone do not fit, the exact
    engine is used with a RuntimeWarning (``extra["method_reason"]``, ``extra["memory"]``).
    ``progress``: True (bar) or a ``(done, total)`` callable (total = ``max_iter``).
    """
    check_tol(tol)
    check_positive_int(max_iter, "max_iter")
    check_v0(v0, obj.num_params)
    check_subsamples(obj, subsamples, subsample_size)
    if chunk_size is not None:
        check_positive_int(chunk_size, "chunk_size")
    if memory_budget is not None:
        check_positive_int(memory_budget, "memory_budget")
    if method not in METHODS:
        raise unknown("non-uniformity method", method, METHODS)
    check_finite(obj)
    est = over_subsets(
        obj,
        lambda o, s: _measure(o, method, tol, max_iter, v0, s, chunk_size, memory_budget, progress),
        subsamples,
        subsample_size,
        seed,
    )
    if not est.converged:
        warn_not_converged("non_uniformity", est.matvecs, est.residual, tol)
    return est
