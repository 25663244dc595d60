"""Feedback shared by every curvature measurement: one convergence warning, opt-in progress, input checks.

* :func:`warn_not_converged` — the single place that raises :class:`~flatminima.errors.ConvergenceWarning`
  (sharpness, hessian_eigenvalues, non_uniformity, linear_stability, spectrum_summary, SharpnessProbe ...).
* :func:`ticker` — ``progress=`` of the long measurements: ``True`` draws a rich bar (flatminima._progress),
  a callable is called as ``progress(done, total)`` after every product (or block of products), ``False`` /
  ``None`` does nothing.
* ``check_*`` — argument validation before any product is computed (ConfigError with the bad value).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ConfigError, ConvergenceWarning

__all__ = [
    "Progress",
    "check_finite",
    "check_k",
    "check_nonnegative",
    "check_positive_int",
    "check_subsamples",
    "check_tol",
    "check_v0",
    "ticker",
    "warn_not_converged",
]

Progress = bool | Callable[[int, int], None] | None


def warn_not_converged(what: str, matvecs: int, residual: float, tol: float, remedy: str = "") -> None:
    """Warn (ConvergenceWarning) that ``what`` stopped after ``matvecs`` products with ``residual`` > tol."""
    tail = f"; {remedy}" if remedy else "; raise max_iter or loosen tol"
    warnings.warn(
        f"{what}: not converged after {matvecs} products (residual {residual:.1e} > tol {tol:g}){tail}",
        ConvergenceWarning,
        stacklevel=3,
    )


@contextmanager
def ticker(progress: Progress, total: int, description: str) -> Iterator[Callable[[int], None]]:
    """``with ticker(progress, total, "lanczos") as tick: ... tick(1)`` (see module docstring)."""
    if progress is None or progress is False:
        yield lambda n=1: None
        return
    if callable(progress):
        done = [0]

        def call(n: int = 1) -> None:
            done[0] += n
            progress(min(done[0], total), total)

        yield call
        return
    if progress is not True:
        raise ConfigError(f"progress must be True, False or a callable (done, total), got {progress!r}")
    from .._progress import progress_bar

    with progress_bar(total, description, enabled=True) as bar:
        yield lambda n=1: bar.advance(n)


def check_finite(obj) -> None:
    """The objective's loss and gradient at the base point are finite (``Objective.check_finite``: a
    diverged run gets a clear error before any product, not a LinAlgError deep inside Lanczos)."""
    check = getattr(obj, "check_finite", None)
    if check is not None:
        check()


def _is_int(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, int)


def check_tol(tol: Any, name: str = "tol") -> float:
    """A tolerance: a finite number > 0."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol <= 0:
        raise ConfigError(f"{name} must be a positive finite number, got {tol!r}")
    return float(tol)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum``."""
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_nonnegative(value: Any, name: str) -> float:
    """A finite number >= 0."""
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_k(k: Any, size: int) -> int:
    """The number of wanted eigenpairs, in [1, size]."""
    if not _is_int(k) or not 1 <= k <= size:
        raise ConfigError(f"k must be an integer in [1, {size}] (the number of parameters), got {k!r}")
    return int(k)


def check_v0(v0: Any, size: int) -> None:
    """A start vector of the operator's length (None: random)."""
    if v0 is None:
        return
    shape = tuple(getattr(v0, "shape", ()))
    if shape != (size,):
        raise ConfigError(f"v0 must be a vector of length {size} (the number of parameters), got {shape}")


def check_subsamples(obj, subsamples: Any, subsample_size: Any) -> None:
    """``subsamples`` None (off) or an integer >= 1; ``subsample_size`` only with it, in [1, n]."""
    if subsamples is None:
        if subsample_size is not None:
            raise ConfigError("subsample_size needs subsamples=k (the number of repeats)")
        return
    check_positive_int(subsamples, "subsamples")
    if subsample_size is not None and (not _is_int(subsample_size) or not 1 <= subsample_size <= obj.n):
        raise ConfigError(f"subsample_size must be an integer in [1, n={obj.n}], got {subsample_size!r}")
